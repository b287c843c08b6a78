//! A CRI v1 client over containerd's Unix socket (`k8s-cri` + tonic).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::error::{Error, Result};

/// A connected CRI client: the runtime and image services on one channel. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    socket: PathBuf,
}

macro_rules! rpc {
    ($(#[$doc:meta])* $name:ident, $client:ident, $req:ty, $resp:ty) => {
        $(#[$doc])*
        ///
        /// # Errors
        /// [`Error::Cri`] with containerd's status.
        pub async fn $name(&self, request: $req) -> Result<$resp> {
            let mut client = self.$client.clone();
            client
                .$name(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| Error::cri(stringify!($name), status))
        }
    };
}

impl Cri {
    /// Connects to the CRI socket at `socket` (lazily: the first call opens the connection).
    ///
    /// # Errors
    /// [`Error::Connect`] when the endpoint cannot be built.
    pub fn connect(socket: &Path) -> Result<Self> {
        let path = socket.to_path_buf();
        let endpoint = Endpoint::try_from("http://[::1]:50051")
            .map_err(|source| Error::Connect {
                socket: path.clone(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5));
        let connect_path = path.clone();
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = connect_path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }));
        // CRI messages (ListContainers with hundreds of containers, logs) exceed tonic's 4 MiB.
        let runtime =
            RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
        let images = ImageServiceClient::new(channel).max_decoding_message_size(64 << 20);
        Ok(Self {
            runtime,
            images,
            socket: path,
        })
    }

    /// The status of container `id`, or `None` when it is gone (removed between a list and
    /// this call).
    ///
    /// # Errors
    /// [`Error::Cri`] with containerd's status, other than NotFound.
    pub async fn container_status_if_present(
        &self,
        id: &str,
    ) -> Result<Option<cri::ContainerStatus>> {
        match self
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
        {
            Ok(s) => Ok(s.status),
            Err(e) if e.cri_code() == Some(tonic::Code::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The socket this client talks to.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    rpc!(
        /// `Version`: the runtime's name and versions.
        version, runtime, cri::VersionRequest, cri::VersionResponse);
    rpc!(
        /// `Status`: whether the runtime and its network are ready.
        status, runtime, cri::StatusRequest, cri::StatusResponse);
    rpc!(
        /// `RunPodSandbox`.
        run_pod_sandbox, runtime, cri::RunPodSandboxRequest, cri::RunPodSandboxResponse);
    rpc!(
        /// `StopPodSandbox`.
        stop_pod_sandbox, runtime, cri::StopPodSandboxRequest, cri::StopPodSandboxResponse);
    rpc!(
        /// `RemovePodSandbox`.
        remove_pod_sandbox, runtime, cri::RemovePodSandboxRequest, cri::RemovePodSandboxResponse);
    rpc!(
        /// `PodSandboxStatus`.
        pod_sandbox_status, runtime, cri::PodSandboxStatusRequest, cri::PodSandboxStatusResponse);
    rpc!(
        /// `ListPodSandbox`.
        list_pod_sandbox, runtime, cri::ListPodSandboxRequest, cri::ListPodSandboxResponse);
    rpc!(
        /// `CreateContainer`.
        create_container, runtime, cri::CreateContainerRequest, cri::CreateContainerResponse);
    rpc!(
        /// `StartContainer`.
        start_container, runtime, cri::StartContainerRequest, cri::StartContainerResponse);
    rpc!(
        /// `StopContainer` (SIGTERM, then SIGKILL after the timeout).
        stop_container, runtime, cri::StopContainerRequest, cri::StopContainerResponse);
    rpc!(
        /// `RemoveContainer`.
        remove_container, runtime, cri::RemoveContainerRequest, cri::RemoveContainerResponse);
    rpc!(
        /// `ListContainers`.
        list_containers, runtime, cri::ListContainersRequest, cri::ListContainersResponse);
    rpc!(
        /// `ContainerStatus`.
        container_status, runtime, cri::ContainerStatusRequest, cri::ContainerStatusResponse);
    rpc!(
        /// `ExecSync`: runs a command in a container and collects its output.
        exec_sync, runtime, cri::ExecSyncRequest, cri::ExecSyncResponse);
    rpc!(
        /// `Exec`: a streaming URL on the runtime's streaming server.
        exec, runtime, cri::ExecRequest, cri::ExecResponse);
    rpc!(
        /// `Attach`: a streaming URL on the runtime's streaming server.
        attach, runtime, cri::AttachRequest, cri::AttachResponse);
    rpc!(
        /// `PortForward`: a streaming URL on the runtime's streaming server.
        port_forward, runtime, cri::PortForwardRequest, cri::PortForwardResponse);
    rpc!(
        /// `ContainerStats`.
        container_stats, runtime, cri::ContainerStatsRequest, cri::ContainerStatsResponse);
    rpc!(
        /// `ListContainerStats`.
        list_container_stats, runtime, cri::ListContainerStatsRequest, cri::ListContainerStatsResponse);
    rpc!(
        /// `ListPodSandboxStats`.
        list_pod_sandbox_stats, runtime, cri::ListPodSandboxStatsRequest, cri::ListPodSandboxStatsResponse);
    rpc!(
        /// `ReopenContainerLog`.
        reopen_container_log, runtime, cri::ReopenContainerLogRequest, cri::ReopenContainerLogResponse);
    rpc!(
        /// `ImageStatus`: whether an image is present, and its id and digests.
        image_status, images, cri::ImageStatusRequest, cri::ImageStatusResponse);
    rpc!(
        /// `PullImage`.
        pull_image, images, cri::PullImageRequest, cri::PullImageResponse);
    rpc!(
        /// `ListImages`.
        list_images, images, cri::ListImagesRequest, cri::ListImagesResponse);
}
