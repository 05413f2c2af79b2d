//! Config checks as tests see them: the error text of a rejected YAML, or its
//! diagnostics, each with its line and column.

use hookcast::config::{self, Config, Diagnostic, Error};

/// The file name every helper here gives the YAML, so errors start `test.yaml:LINE:COLUMN:`.
pub const FILE: &str = "test.yaml";

/// The error `yaml` is rejected with, as `hookcast check` prints it.
#[track_caller]
pub fn config_error(yaml: &str) -> String {
    match config::from_yaml(FILE, yaml) {
        Ok(_) => panic!("accepted, but it should have been rejected:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// Loads `yaml` with `env` as the whole environment.
pub fn load_with_env(yaml: &str, env: &[(&str, &str)]) -> Result<Config, Error> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    config::from_yaml_with_env(FILE, yaml, &move |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.into())
    })
}

/// The diagnostics of `loaded`, the result of loading `yaml`, which must have
/// been rejected as invalid.
#[track_caller]
pub fn rejected(loaded: Result<Config, Error>, yaml: &str) -> Vec<Diagnostic> {
    match loaded {
        Ok(_) => panic!("accepted, but it should have been rejected:\n{yaml}"),
        Err(Error::Invalid { file, diagnostics }) => {
            assert_eq!(file, FILE);
            assert!(!diagnostics.is_empty(), "Invalid without diagnostics");
            diagnostics
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Asserts that `ds`, the diagnostics of `yaml`, are exactly one problem, at
/// `line`:`column`, whose message contains every one of `phrases`.
#[track_caller]
pub fn assert_one_diagnostic(
    ds: &[Diagnostic],
    yaml: &str,
    line: u64,
    column: u64,
    phrases: &[&str],
) {
    assert_eq!(
        ds.len(),
        1,
        "expected exactly one diagnostic for\n{yaml}\ngot {ds:#?}"
    );
    let d = &ds[0];
    assert_eq!(
        (d.line, d.column),
        (line, column),
        "wrong position for\n{yaml}\nmessage: {}",
        d.message
    );
    for phrase in phrases {
        assert!(
            d.message.contains(phrase),
            "message {:?} does not contain {phrase:?} for\n{yaml}",
            d.message
        );
    }
}
