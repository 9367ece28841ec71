//! The chart ships the CRD that `runway-controller crd` prints, unchanged.

use std::path::PathBuf;

const CHART_CRD: &str = "charts/runway-controller/crds/runnerscalesets.actions.runway.dev.yaml";

#[test]
fn the_chart_ships_the_crd_the_binary_prints() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CHART_CRD);
    let shipped = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let printed = runway_controller::crd::crd_yaml().expect("the CRD serializes");
    assert!(
        shipped == printed,
        "{CHART_CRD} differs from `runway-controller crd`; regenerate it with\n  \
         cargo run -q -p runway-controller -- crd > {CHART_CRD}"
    );
}
