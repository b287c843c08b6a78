// The JDK's own TLS (PKIX) with a kubeconfig's certificate-authority-data as the only trust
// anchor, loaded as the official Java client (io.kubernetes:client-java, ClientBuilder) loads
// it: every certificate of the PEM into a KeyStore, a TrustManagerFactory over it, and the
// default hostname verification. GETs /api and /api/v1/namespaces with the kubeconfig's token.
// Usage: java PinnedKubeconfig.java KUBECONFIG   (a single-file program, no build step)
import java.io.ByteArrayInputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.Base64;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class PinnedKubeconfig {
    // The value of the first `key:` line (the kubeconfigs daas writes hold one cluster and user).
    static String field(String kubeconfig, String key) {
        for (String line : kubeconfig.split("\n")) {
            String t = line.trim();
            if (t.startsWith(key + ":")) {
                String v = t.substring(key.length() + 1).trim();
                return v.startsWith("\"") ? v.substring(1, v.length() - 1) : v;
            }
        }
        throw new IllegalArgumentException("no " + key + " in the kubeconfig");
    }

    public static void main(String[] args) throws Exception {
        String kubeconfig = Files.readString(Path.of(args[0]));
        byte[] ca = Base64.getDecoder().decode(field(kubeconfig, "certificate-authority-data"));
        KeyStore store = KeyStore.getInstance(KeyStore.getDefaultType());
        store.load(null, null);
        int i = 0;
        for (Certificate c : CertificateFactory.getInstance("X.509")
                .generateCertificates(new ByteArrayInputStream(ca))) {
            store.setCertificateEntry("ca-" + i++, c);
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(store);
        SSLContext tls = SSLContext.getInstance("TLS");
        tls.init(null, tmf.getTrustManagers(), null);
        HttpClient client = HttpClient.newBuilder().sslContext(tls).build();
        String server = field(kubeconfig, "server");
        String token = field(kubeconfig, "token");
        for (String path : new String[] {"/api", "/api/v1/namespaces"}) {
            HttpResponse<String> r = client.send(
                    HttpRequest.newBuilder(URI.create(server + path))
                            .header("Authorization", "Bearer " + token)
                            .build(),
                    HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            if (r.statusCode() != 200) {
                throw new IllegalStateException(path + " answered " + r.statusCode() + ": " + r.body());
            }
            System.out.println(path + " ok: " + r.version() + " " + r.body().length() + " bytes");
        }
    }
}
