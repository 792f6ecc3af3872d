//! The rules file is edited by people: a mistake must be refused with a message that
//! names the block and key, and a valid edit must take effect without a rebuild.

use lingshi_triage::{Category, RulesError, Triage, BUILTIN_RULES};

const MINIMAL: &str = r#"
version = 1
[decision]
emergency = 1.0
fraud = 1.0
urgent = 0.8

[[modifier]]
kind = "negation"
detail = "negated by {marker}"
position = "before"
scope = "clause"
window = 2
factor = 0.0
urgent_factor = 0.0
terms = ["没有", "not"]

[[signal]]
kind = "danger"
detail = "test word"
category = "emergency"
weight = 1.0
modifiers = ["negation"]
terms = ["火山", "volcano"]
"#;

fn err(text: &str) -> String {
    match Triage::from_toml(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn builtin_rules_compile() {
    Triage::from_toml(BUILTIN_RULES).expect("shipped rules compile");
}

#[test]
fn an_edited_file_takes_effect() {
    let t = Triage::from_toml(MINIMAL).unwrap();
    assert_eq!(t.classify("火山爆发", None).category, Category::Emergency);
    assert_eq!(t.classify("没有火山", None).category, Category::Routine);
    assert_eq!(t.classify("VOLCANO!", None).category, Category::Emergency);
    assert_eq!(t.classify("not volcano", None).category, Category::Routine);
    assert_eq!(t.classify("救命", None).category, Category::Routine);
}

#[test]
fn syntax_errors_give_the_location() {
    let e = err("version = 1\n[decision\n");
    assert!(e.contains("line 2"), "{e}");
    let e = err(&MINIMAL.replace("weight = 1.0", "wieght = 1.0"));
    assert!(e.contains("wieght"), "{e}");
    let e = err(&MINIMAL.replace("category = \"emergency\"", "category = \"panic\""));
    assert!(e.contains("panic"), "{e}");
}

#[test]
fn invalid_rules_name_the_block() {
    let e = err(&MINIMAL.replace("modifiers = [\"negation\"]", "modifiers = [\"negaton\"]"));
    assert!(
        e.contains("signal #1 \"danger\"") && e.contains("negaton"),
        "{e}"
    );
    let e = err(&MINIMAL.replace(
        "terms = [\"火山\", \"volcano\"]",
        "terms = [\"@volcanoes\"]",
    ));
    assert!(e.contains("@volcanoes"), "{e}");
    let e = err(&MINIMAL.replace("weight = 1.0", "weight = -2"));
    assert!(e.contains("signal #1") && e.contains("weight"), "{e}");
    let e = err(&MINIMAL.replace("factor = 0.0\nurgent", "factor = 1.5\nurgent"));
    assert!(
        e.contains("modifier #1 \"negation\"") && e.contains("factor"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("terms = [\"火山\", \"volcano\"]", "terms = [\"  \"]"));
    assert!(e.contains("empty"), "{e}");
    let e = err(&MINIMAL.replace("version = 1", "version = 7"));
    assert!(e.contains("version"), "{e}");
    let e = err(&format!(
        "{MINIMAL}\n[normalise.typos]\n\"火山\" = [\"火山\"]\n"
    ));
    assert!(e.contains("normalise.typos"), "{e}");
    assert!(matches!(
        Triage::from_toml(&MINIMAL.replace("kind = \"danger\"", "kind = \"Danger!\"")),
        Err(RulesError::Invalid { .. })
    ));
}
