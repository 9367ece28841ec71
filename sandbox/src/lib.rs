//! Runway's sandbox: the real Kubernetes control plane (etcd, kube-apiserver
//! and kube-controller-manager v1.20.2) on this machine, and fakes that follow
//! the wire protocols of the outside services Runway talks to.
//!
//! Integration tests use [`test_namespace`]; the `runway-sandbox` binary
//! starts and stops named sandboxes for people.
#![forbid(unsafe_code)]

pub mod actions;
pub mod bench;
pub mod binaries;
pub mod cluster;
pub mod controller_process;
pub mod crds;
pub mod demo;
pub mod github;
pub mod helm;
pub mod http_proxy;
pub mod images;
pub mod kubelet;
pub mod names;
pub mod node;
pub mod paths;
pub mod pki;
pub mod play;
pub mod process;
pub mod runner_standin;
pub mod stage;
pub mod sts;
pub mod testing;
pub mod wait;

pub use cluster::{ClusterError, ControlPlane};
pub use crds::apply_crd;
pub use testing::{TestNamespace, node_test_namespace, shared, shared_node, test_namespace};
