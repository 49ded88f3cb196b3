//! What MODULE.bazel takes from outside: module versions the Bazel Central
//! Registry publishes, and target triples rules_rust declares settings for.
//!
//! Neither can be looked up from here (no registry access), so both are kept
//! in `bazel/published_versions.txt`, each line checked by hand against the
//! registry or rules_rust's sources on the date the file gives. A version or
//! triple missing from it fails this test, so that a bump is a deliberate
//! edit of that list, made after looking, and not a guess that first fails
//! on a user's machine.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use crate::workspace::{assert_reported, load, set_attribute, string_literals, Bazel, Rule};

/// The file, relative to the workspace root.
pub const PUBLISHED: &str = "bazel/published_versions.txt";

/// The text of the file.
pub fn published_versions(bazel: &Bazel) -> String {
    let path = bazel.root.join(PUBLISHED);
    fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path:?}: {error}"))
}

/// What `bazel/published_versions.txt` says.
#[derive(Debug, Default)]
pub struct Published {
    /// The date the lines were last checked.
    pub checked: Option<String>,
    /// Module name to the versions seen published.
    pub versions: BTreeMap<String, BTreeSet<String>>,
    /// rules_rust version to the triples it declares config settings for.
    pub triples: BTreeMap<String, BTreeSet<String>>,
}

/// Reads the file's lines: `checked <date>`, `module <name> <version>...`
/// and `triple <rules_rust version> <triple>...`; `#` starts a comment.
pub fn parse(text: &str) -> Result<Published, String> {
    let mut published = Published::default();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        let owned = |words: &[&str]| {
            words
                .iter()
                .map(|word| word.to_string())
                .collect::<Vec<_>>()
        };
        match words.as_slice() {
            [] => {}
            ["checked", date] => published.checked = Some(date.to_string()),
            ["module", name, versions @ ..] if !versions.is_empty() => {
                let entry = published.versions.entry(name.to_string()).or_default();
                entry.extend(owned(versions));
            }
            ["triple", version, triples @ ..] if !triples.is_empty() => {
                let entry = published.triples.entry(version.to_string()).or_default();
                entry.extend(owned(triples));
            }
            _ => {
                return Err(format!(
                    "{PUBLISHED} line {}: expected `checked <date>`, `module <name> \
                     <version>...` or `triple <rules_rust version> <triple>...`",
                    index + 1
                ))
            }
        }
    }
    if published.checked.is_none() {
        return Err(format!(
            "{PUBLISHED} must say when it was checked: `checked <date>`"
        ));
    }
    Ok(published)
}

/// An argument of a call, written either one per line or all on one line
/// (`bazel_dep(name = "x", version = "1.0")`).
fn argument(rule: &Rule, key: &str) -> Option<String> {
    if let Some(value) = rule.string(key) {
        return Some(value);
    }
    let one_line = rule.attribute("");
    let arguments = one_line
        .split(", ")
        .filter_map(|part| part.split_once(" = "));
    let mut matching = arguments.filter(|(name, _)| name.trim() == key);
    let (_, value) = matching.next()?;
    string_literals(value)
        .into_iter()
        .next()
        .map(|(text, _)| text)
}

/// The problems with MODULE.bazel's module versions and crate_universe's
/// triples, against `published` (the text of the file).
pub fn module_source_problems(bazel: &Bazel, published: &str) -> Vec<String> {
    let published = match parse(published) {
        Ok(published) => published,
        Err(problem) => return vec![problem],
    };
    let checked = published.checked.as_deref().unwrap_or_default();
    let mut problems = Vec::new();
    let mut rules_rust = None;
    for dependency in bazel.module.iter().filter(|rule| rule.kind == "bazel_dep") {
        let (Some(name), Some(version)) = (
            argument(dependency, "name"),
            argument(dependency, "version"),
        ) else {
            problems.push("MODULE.bazel: a bazel_dep without a name and a version".into());
            continue;
        };
        let listed = published.versions.get(&name);
        if !listed.is_some_and(|versions| versions.contains(&version)) {
            let seen = listed.map_or(String::from("none"), |versions| {
                versions.iter().cloned().collect::<Vec<_>>().join(", ")
            });
            problems.push(format!(
                "MODULE.bazel: bazel_dep {name} {version} is not among the versions \
                 {PUBLISHED} lists as published (checked {checked}: {seen}); check the \
                 registry and list it there first"
            ));
        }
        if name == "rules_rust" {
            rules_rust = Some(version);
        }
    }
    let Some(rules_rust) = rules_rust else {
        problems.push("MODULE.bazel has no bazel_dep on rules_rust".into());
        return problems;
    };
    let supported = published.triples.get(&rules_rust);
    let from_cargo = bazel
        .module
        .iter()
        .filter(|rule| rule.kind == "crate.from_cargo");
    for triple in from_cargo.flat_map(|rule| rule.set("supported_platform_triples")) {
        if !supported.is_some_and(|triples| triples.contains(&triple)) {
            problems.push(format!(
                "MODULE.bazel: supported_platform_triples names {triple}, for which rules_rust \
                 {rules_rust} declares no @rules_rust//rust/platform:{triple} setting (per \
                 {PUBLISHED}, checked {checked}); crate_universe's selects would name a \
                 target that does not exist"
            ));
        }
    }
    problems
}

fn module_rule_mut<'a>(bazel: &'a mut Bazel, kind: &str, containing: &str) -> &'a mut Rule {
    let mut rules = bazel.module.iter_mut().filter(|rule| rule.kind == kind);
    rules
        .find(|rule| {
            rule.attributes
                .iter()
                .any(|(_, value)| value.contains(containing))
        })
        .expect("the MODULE.bazel call")
}

#[test]
fn an_unpublished_module_version_and_an_undeclared_triple_are_reported() {
    let (_, mut bazel) = load();
    let published = published_versions(&bazel);
    // As MODULE.bazel named rules_oci before it was checked against the
    // registry, and a musl triple in crate_universe's list.
    let rules_oci = module_rule_mut(&mut bazel, "bazel_dep", "\"rules_oci\"");
    set_attribute(rules_oci, "", "name = \"rules_oci\", version = \"2.3.5\"");
    let from_cargo = module_rule_mut(&mut bazel, "crate.from_cargo", "Cargo.lock");
    let triples = from_cargo.attribute("supported_platform_triples").replace(
        "\"x86_64-unknown-linux-gnu\",",
        "\"x86_64-unknown-linux-gnu\",\n        \"x86_64-unknown-linux-musl\",",
    );
    set_attribute(from_cargo, "supported_platform_triples", &triples);
    let problems = module_source_problems(&bazel, &published);
    assert_reported(
        &problems,
        "bazel_dep rules_oci 2.3.5 is not among the versions bazel/published_versions.txt lists",
    );
    assert_reported(
        &problems,
        "supported_platform_triples names x86_64-unknown-linux-musl, for which rules_rust \
         0.70.0 declares no @rules_rust//rust/platform:x86_64-unknown-linux-musl setting",
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
}

#[test]
fn a_published_versions_file_without_a_date_or_in_another_shape_is_refused() {
    let (_, bazel) = load();
    let published = published_versions(&bazel);
    let undated: String = published
        .lines()
        .filter(|line| !line.starts_with("checked"))
        .map(|line| format!("{line}\n"))
        .collect();
    let problems = module_source_problems(&bazel, &undated);
    assert_reported(&problems, "must say when it was checked");
    let problems = module_source_problems(&bazel, "checked 2026-12-07\nrules_oci 2.3.0\n");
    assert_reported(&problems, "line 2: expected `checked <date>`");
}
