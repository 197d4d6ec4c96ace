//! One failing flow per diagnostic code (`tests/ui/CODE.ivr`): `ivr check` must
//! report that code, exit as documented, and render it exactly as snapshotted.

mod common;
use common::*;

fn check_fixture(code: &str) {
    let path = format!("tests/ui/{code}.ivr");
    // Cross-checks against the deployment (E05xx) need its configuration.
    let out = if code[1..].starts_with("05") { ivr(&["check", "--config", "tests/ui/site.toml", &path]) } else { ivr(&["check", &path]) };
    let err = stderr(&out);
    assert!(err.contains(&format!("[{code}]")), "{path} did not report {code}:\n{err}");
    let want = if code.starts_with('E') { 1 } else { 0 };
    assert_eq!(out.status.code(), Some(want), "exit status of `ivr check {path}`:\n{err}");
    if code.starts_with('W') {
        let denied = ivr(&["check", "--deny-warnings", "--config", "tests/ui/site.toml", &path]);
        assert_eq!(denied.status.code(), Some(1), "--deny-warnings must fail on {code}");
    }
    insta::assert_snapshot!(code, err);
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            #[allow(non_snake_case)]
            fn $name() {
                check_fixture(stringify!($name));
            }
        )*

        #[test]
        fn every_code_has_a_fixture() {
            let tested = [$(stringify!($name)),*];
            for rule in ivr_compiler::Code::RULES {
                assert!(tested.contains(&rule.as_str()), "no fixture for {rule} ({})", rule.title());
            }
        }
    };
}

fixtures!(
    E0001, E0002, E0003, E0101, E0102, E0103, E0104, E0105, E0106, E0107, E0108, E0109, E0110, E0111, E0112,
    E0113, E0114, E0115, E0116, E0117, E0118, E0119, E0120, E0121, E0122, E0201, E0202, E0203, E0204, E0205, E0206, E0207, E0208, E0209, E0210,
    E0211, E0212, E0213, E0301, E0302, E0303, E0304, E0305, W0401, W0402, W0403, W0405, W0406, W0407, W0408, E0501, E0502, W0501,
);

#[test]
fn every_code_is_documented() {
    let doc = std::fs::read_to_string(root().join("docs/language.md")).unwrap();
    for rule in ivr_compiler::Code::RULES {
        assert!(doc.contains(&format!("| {rule} |")), "docs/language.md does not list {rule} ({})", rule.title());
    }
}

/// Messages that help beyond the code: `tests/ui/hints/NAME.ivr`, snapshotted
/// as `hint_NAME`.
fn check_hint(name: &str) {
    let path = format!("tests/ui/hints/{name}.ivr");
    let out = ivr(&["check", &path]);
    assert_eq!(out.status.code(), Some(1), "{path}:\n{}", stderr(&out));
    insta::assert_snapshot!(format!("hint_{name}"), stderr(&out));
}

#[test]
fn full_width_punctuation_is_named() {
    check_hint("full_width");
}

#[test]
fn an_unclosed_brace_is_reported_where_it_opened() {
    check_hint("unclosed_brace");
}

#[test]
fn an_unclosed_string_is_reported_where_it_starts() {
    check_hint("unclosed_string");
}

#[test]
fn misspelt_names_get_a_suggestion() {
    check_hint("did_you_mean");
}

#[test]
fn one_mistake_is_one_error() {
    check_hint("one_mistake_one_error");
    let out = ivr(&["check", "tests/ui/hints/one_mistake_one_error.ivr"]);
    assert!(stderr(&out).contains("checked 1 flow: 1 error"), "{}", stderr(&out));
}
