use k8s_openapi::api::core::v1::Service;
use tokio::sync::mpsc;

use super::*;

type Answer = Result<Vec<(&'static str, &'static str)>, String>;

/// Says when it is asked for a list, then answers with what the test sends.
struct Script {
    asked: mpsc::Sender<()>,
    answers: mpsc::Receiver<Answer>,
}

impl ObjectSource for Script {
    async fn list(&mut self, _kind: ObjectKind) -> Result<Vec<ClusterObject>, String> {
        let _ = self.asked.send(()).await;
        let items = self
            .answers
            .recv()
            .await
            .unwrap_or_else(|| Ok(Vec::new()))?;
        Ok(items
            .into_iter()
            .map(|(name, rv)| {
                let mut s = Service::default();
                s.metadata.namespace = Some("default".into());
                s.metadata.name = Some(name.into());
                s.metadata.resource_version = Some(rv.into());
                ClusterObject::Service(s)
            })
            .collect())
    }
}

fn names(model: &ClusterModel) -> Vec<String> {
    model
        .snapshot()
        .services
        .values()
        .filter_map(|s| s.metadata.name.clone())
        .collect()
}

#[tokio::test]
async fn replaces_a_kind_only_when_its_objects_change_and_keeps_them_when_a_list_fails() {
    let (asked_tx, mut asked) = mpsc::channel(1);
    let (answer, answers) = mpsc::channel(1);
    let model = ClusterModel::new();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(
        Script {
            asked: asked_tx,
            answers,
        },
        model.clone(),
        &[ObjectKind::Service],
        Duration::from_millis(1),
        cancel.clone(),
    ));
    // Each answer is fully applied once the feeder asks for the next list.
    let mut step = async |a: Answer| {
        asked.recv().await.unwrap();
        answer.send(a).await.unwrap();
    };
    assert!(!model.snapshot().is_synced(&[ObjectKind::Service]));
    step(Ok(vec![("a", "1")])).await;
    step(Ok(vec![("a", "1")])).await; // the same list again: no change for the readers
    assert!(model.snapshot().is_synced(&[ObjectKind::Service]));
    assert_eq!(names(&model), ["a"]);
    let first = model.snapshot().revision();
    step(Err("403 forbidden".to_owned())).await; // a failed list: the objects stay
    assert_eq!(model.snapshot().revision(), first);
    step(Ok(vec![("a", "2"), ("b", "3")])).await; // a changed resourceVersion, a new object
    assert_eq!(model.snapshot().revision(), first);
    assert_eq!(names(&model), ["a"]);
    step(Ok(vec![("a", "2"), ("b", "3")])).await;
    assert_eq!(model.snapshot().revision(), first + 1);
    assert_eq!(names(&model), ["a", "b"]);
    cancel.cancel();
    drop(answer); // a list still waiting ends empty; the feeder then sees the cancel
    task.await.unwrap();
}

#[test]
fn list_paths_are_the_cluster_wide_collections() {
    assert_eq!(
        list_path(ObjectKind::EndpointSlice),
        "/apis/discovery.k8s.io/v1/endpointslices"
    );
    assert_eq!(
        list_path(ObjectKind::NetworkPolicy),
        "/apis/networking.k8s.io/v1/networkpolicies"
    );
    assert_eq!(ALL_KINDS.len(), 6);
}
