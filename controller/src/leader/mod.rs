//! Leader election: only the holder of the Lease runs listeners and writes.
//! The implementation (client-go's algorithm, its invariants and tests)
//! lives in the `runway-lease` crate, shared with `runway serve`; the
//! controller labels the Lease it creates with [`controller_config`].

pub use runway_lease::{
    Fence, LeaderConfig, LeaderElector, LeaderError, Leadership, default_identity,
};

use crate::runner::{MANAGED_BY, MANAGED_BY_LABEL};

/// The controller's Lease `namespace/name` held as `identity`, client-go's
/// default timing, labelled managed-by Runway.
pub fn controller_config(
    namespace: impl Into<String>,
    name: impl Into<String>,
    identity: impl Into<String>,
) -> LeaderConfig {
    LeaderConfig::new(namespace, name, identity).with_label(MANAGED_BY_LABEL, MANAGED_BY)
}
