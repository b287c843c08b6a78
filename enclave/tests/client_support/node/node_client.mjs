// The official JavaScript client (npm `@kubernetes/client-node`, OpenSSL underneath) against the
// server of the kubeconfig given: the pinned certificate as trust anchor, list, create, get, a
// 409 on a stale update, a watch from a list's resourceVersion, a 404 decoded as a Status, and
// deletion returning the deleted object where upstream does. Prints one line per check.
// Usage: node node_client.mjs KUBECONFIG NAMESPACE
import * as k8s from '@kubernetes/client-node';

const [kubeconfigPath, ns] = process.argv.slice(2);
const kc = new k8s.KubeConfig();
kc.loadFromFile(kubeconfigPath);
const core = kc.makeApiClient(k8s.CoreV1Api);

function check(cond, what) {
  if (!cond) {
    throw new Error(`check failed: ${what}`);
  }
}

const namespaces = await core.listNamespace();
const names = namespaces.items.map((n) => n.metadata.name);
check(names.includes('default') && names.includes('kube-system'), `namespaces ${names}`);
console.log('list ok');

await core.createNamespace({ body: { metadata: { name: ns } } });
const created = await core.createNamespacedConfigMap({
  namespace: ns,
  body: { metadata: { name: 'from-node', labels: { client: 'node' } }, data: { a: '1' } },
});
check(created.metadata.uid && created.metadata.resourceVersion, 'created has uid and resourceVersion');
const got = await core.readNamespacedConfigMap({ name: 'from-node', namespace: ns });
check(got.data.a === '1', `read back ${JSON.stringify(got.data)}`);
console.log('create ok');

const updated = await core.replaceNamespacedConfigMap({
  name: 'from-node',
  namespace: ns,
  body: { ...got, data: { a: '2' } },
});
check(updated.data.a === '2', 'replaced');
try {
  await core.replaceNamespacedConfigMap({
    name: 'from-node',
    namespace: ns,
    body: { ...got, data: { a: '3' } },
  });
  check(false, 'a stale update was accepted');
} catch (e) {
  check(e.code === 409, `stale update answered ${e.code}: ${e.body}`);
  const status = JSON.parse(e.body);
  check(status.kind === 'Status' && status.reason === 'Conflict', `conflict status ${e.body}`);
}
console.log('update conflict ok: 409');

try {
  await core.readNamespacedConfigMap({ name: 'missing', namespace: ns });
  check(false, 'a missing object was found');
} catch (e) {
  const status = JSON.parse(e.body);
  check(e.code === 404 && status.reason === 'NotFound', `missing answered ${e.code}: ${e.body}`);
  check(status.details.name === 'missing' && status.details.kind === 'configmaps', e.body);
}
console.log('not found ok: 404');

const list = await core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'client=node' });
check(list.items.length === 1, `selected ${list.items.length}`);
const events = [];
const watch = new k8s.Watch(kc);
let stopWatch = () => {};
const done = new Promise((resolve, reject) => {
  // A hang guard: the watch ends itself once it has seen the deletion.
  const guard = setTimeout(() => reject(new Error(`watch saw only ${events}`)), 30000);
  watch
    .watch(
      `/api/v1/namespaces/${ns}/configmaps`,
      { resourceVersion: list.metadata.resourceVersion },
      (type, obj) => {
        events.push(`${type} ${obj.metadata.name}`);
        if (type === 'DELETED') resolve();
      },
      (err) => (err ? reject(err) : resolve()),
    )
    .then((req) => {
      stopWatch = () => {
        clearTimeout(guard);
        req.abort();
      };
    }, reject);
});
await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'second' } } });
// A ConfigMap's delete answers a Status naming it (upstream returns the object only for kinds
// that are not gone at once, or that ask for it, like Service).
const deleted = await core.deleteNamespacedConfigMap({ name: 'second', namespace: ns });
check(deleted.status === 'Success' && deleted.details.name === 'second', `delete returned ${JSON.stringify(deleted)}`);
await done;
stopWatch();
check(events.join(',') === 'ADDED second,DELETED second', `watch saw ${events}`);
console.log(`watch ok: ${events.length} events`);

const svc = await core.createNamespacedService({
  namespace: ns,
  body: { metadata: { name: 'web' }, spec: { ports: [{ port: 80 }], selector: { app: 'web' } } },
});
check(svc.spec.clusterIP, 'a cluster IP');
const gone = await core.deleteNamespacedService({ name: 'web', namespace: ns });
check(gone.kind === 'Service' && gone.metadata.name === 'web', `service delete returned ${JSON.stringify(gone)}`);
console.log('delete ok');

await core.deleteNamespace({ name: ns });
console.log('all ok');
