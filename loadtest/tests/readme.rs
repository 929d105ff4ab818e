//! loadtest/README.md shows the `--help` of `slow` and `soak` as the binary prints it.

use std::process::Command;

#[test]
fn readme_shows_the_help_of_slow_and_soak() {
    let readme = include_str!("../README.md");
    for scenario in ["slow", "soak"] {
        let out = Command::new(env!("CARGO_BIN_EXE_kreisel-loadtest"))
            .args([scenario, "--help"])
            .output()
            .expect("run kreisel-loadtest");
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).expect("UTF-8 help");
        let block = format!("```\n{help}```\n");
        assert!(
            readme.contains(&block),
            "loadtest/README.md must show `kreisel-loadtest {scenario} --help` as it is now:\n{help}"
        );
    }
}
