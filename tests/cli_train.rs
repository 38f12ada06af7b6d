//! `eikoloc train` in a build without the `train` feature must fail with a clear instruction
//! (the subcommand exists in every build, burn only in trainer builds).

#[cfg(not(feature = "train"))]
#[test]
fn train_without_feature_says_how_to_rebuild() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eikoloc"))
        .args(["train", "--config", "station-configs/demo"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run eikoloc");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features train"), "{err}");
}
