//! Reading both sides: the Bazel files (as buildifier formats them) and
//! `cargo metadata`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A top-level call: `kind(name = "x", srcs = [...])`, each attribute's
/// value as written. A one-line call keeps its arguments under "".
#[derive(Clone, Debug, Default)]
pub struct Rule {
    pub kind: String,
    pub attributes: Vec<(String, String)>,
}

impl Rule {
    pub fn attribute(&self, key: &str) -> &str {
        let mut found = self.attributes.iter().filter(|(name, _)| name == key);
        found.next().map_or("", |(_, value)| value)
    }

    /// The string literals of an attribute, each with whether it is inside a
    /// `glob(...)`.
    pub fn strings(&self, key: &str) -> Vec<(String, bool)> {
        string_literals(self.attribute(key))
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.strings(key).into_iter().next().map(|(text, _)| text)
    }

    pub fn name(&self) -> String {
        self.string("name").unwrap_or_default()
    }

    pub fn set(&self, key: &str) -> BTreeSet<String> {
        self.strings(key)
            .into_iter()
            .map(|(text, _)| text)
            .collect()
    }
}

/// The string literals in `text`, each with whether it is inside `glob(...)`.
pub fn string_literals(text: &str) -> Vec<(String, bool)> {
    let (mut found, mut depth, mut glob_depth) = (Vec::new(), 0, None);
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '#' => while chars.next_if(|&(_, c)| c != '\n').is_some() {},
            '"' => {
                let mut literal = String::new();
                while let Some((_, c)) = chars.next().filter(|&(_, c)| c != '"') {
                    literal.extend(if c == '\\' {
                        chars.next().map(|(_, c)| c)
                    } else {
                        Some(c)
                    });
                }
                found.push((literal, glob_depth.is_some()));
            }
            '(' => {
                depth += 1;
                if glob_depth.is_none() && text[..at].ends_with("glob") {
                    glob_depth = Some(depth);
                }
            }
            ')' => {
                if glob_depth == Some(depth) {
                    glob_depth = None;
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    found
}

pub fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || "_.".contains(c))
}

/// The calls of a buildifier-formatted Starlark file, and its top-level
/// `NAME = "value"` assignments.
pub fn read_rules(source: &str) -> Result<(Vec<Rule>, BTreeMap<String, String>), String> {
    let (mut rules, mut assignments) = (Vec::new(), BTreeMap::new());
    let (mut open, mut in_docstring): (Option<Rule>, bool) = (None, false);
    for (index, line) in source.lines().enumerate() {
        let attribute = line
            .strip_prefix("    ")
            .and_then(|rest| rest.split_once(" = "));
        if in_docstring || line.starts_with("\"\"\"") {
            in_docstring ^= line.matches("\"\"\"").count() % 2 == 1;
        } else if let Some(rule) = open.as_mut() {
            if line == ")" || line == "])" {
                if let Some((_, value)) = rule.attributes.last_mut().filter(|_| line == "])") {
                    value.push_str("\n]");
                }
                rules.extend(open.take());
            } else if let Some((key, value)) = attribute.filter(|(key, _)| is_identifier(key)) {
                rule.attributes.push((key.to_owned(), value.to_owned()));
            } else if let Some((_, value)) = rule.attributes.last_mut() {
                value.push('\n');
                value.push_str(line);
            } else {
                return Err(format!("line {}: expected `    name = value`", index + 1));
            }
        } else if line.trim().is_empty() || line.starts_with('#') {
        } else if let Some((kind, rest)) =
            line.split_once('(').filter(|(kind, _)| is_identifier(kind))
        {
            let mut rule = Rule {
                kind: kind.to_owned(),
                attributes: Vec::new(),
            };
            if let Some(arguments) = rest.strip_suffix(')') {
                rule.attributes.push((String::new(), arguments.to_owned()));
                rules.push(rule);
            } else if rest.is_empty() || rest == "[" {
                // `kind(` or `kind([`: attributes, or one list, follow.
                if !rest.is_empty() {
                    rule.attributes.push((String::new(), rest.to_owned()));
                }
                open = Some(rule);
            } else {
                return Err(format!(
                    "line {}: put each argument on a line of its own",
                    index + 1
                ));
            }
        } else if let Some((name, value)) = line
            .split_once(" = ")
            .filter(|(name, _)| is_identifier(name))
        {
            let value = string_literals(value).into_iter().next();
            assignments.insert(
                name.to_owned(),
                value.map(|(text, _)| text).unwrap_or_default(),
            );
        } else {
            return Err(format!(
                "line {}: not a call or an assignment: {line}",
                index + 1
            ));
        }
    }
    match open {
        Some(rule) => Err(format!("`{}(` is never closed by a `)` line", rule.kind)),
        None => Ok((rules, assignments)),
    }
}

pub struct Package {
    pub name: String,
    /// Relative to the workspace root: also its Bazel package.
    pub directory: String,
    pub rust_version: Option<String>,
    pub targets: Vec<Target>,
    pub dependencies: Vec<Dependency>,
    /// Its `[features]` table: what each feature turns on.
    pub features: BTreeMap<String, Vec<String>>,
}

pub struct Target {
    pub name: String,
    pub kind: String,
    /// Relative to the package's directory.
    pub source: String,
    pub test: bool,
    pub doctest: bool,
}

pub struct Dependency {
    /// `normal`, `dev` or `build`.
    pub kind: String,
    /// The directory of the workspace member it is, if it is one.
    pub member: Option<String>,
    pub features: BTreeSet<String>,
    /// Whether it keeps the crate's default features on.
    pub uses_default_features: bool,
}

pub struct Bazel {
    pub root: PathBuf,
    /// The rules of each BUILD.bazel, by package ("" is the root).
    pub packages: BTreeMap<String, Vec<Rule>>,
    pub module: Vec<Rule>,
    pub module_assignments: BTreeMap<String, String>,
}

pub fn workspace_root() -> PathBuf {
    let client = Path::new(env!("CARGO_MANIFEST_DIR"));
    client
        .parent()
        .expect("client/ is in the workspace")
        .to_path_buf()
}

pub fn relative(root: &Path, path: &str) -> String {
    let path = Path::new(path)
        .strip_prefix(root)
        .unwrap_or(Path::new(path));
    path.to_string_lossy().into_owned()
}

pub fn cargo_packages(root: &Path) -> Vec<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo metadata failed: {stderr}");
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let list = |value: &Value| value.as_array().cloned().unwrap_or_default();
    let directory_of = |package: &Value| {
        let manifest = relative(root, &text(&package["manifest_path"]));
        manifest
            .trim_end_matches("Cargo.toml")
            .trim_end_matches('/')
            .to_owned()
    };
    let packages = list(&metadata["packages"]);
    let members: BTreeSet<String> = packages.iter().map(directory_of).collect();
    let targets = |package: &Value, directory: &Path| -> Vec<Target> {
        let targets = list(&package["targets"]).into_iter();
        targets
            .map(|target| Target {
                name: text(&target["name"]),
                kind: text(&target["kind"][0]),
                source: relative(directory, &text(&target["src_path"])),
                test: target["test"] == true,
                doctest: target["doctest"] == true,
            })
            .collect()
    };
    let dependencies = |package: &Value| -> Vec<Dependency> {
        let dependencies = list(&package["dependencies"]).into_iter();
        dependencies
            .map(|dependency| Dependency {
                kind: dependency["kind"].as_str().unwrap_or("normal").to_owned(),
                member: Some(relative(root, &text(&dependency["path"])))
                    .filter(|path| members.contains(path)),
                features: list(&dependency["features"]).iter().map(text).collect(),
                uses_default_features: dependency["uses_default_features"] != false,
            })
            .collect()
    };
    packages
        .iter()
        .map(|package| Package {
            name: text(&package["name"]),
            directory: directory_of(package),
            rust_version: package["rust_version"].as_str().map(str::to_owned),
            targets: targets(package, &root.join(directory_of(package))),
            dependencies: dependencies(package),
            features: package["features"]
                .as_object()
                .map(|table| {
                    table
                        .iter()
                        .map(|(name, enables)| {
                            (name.clone(), list(enables).iter().map(text).collect())
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

/// Paths under `directory` relative to `prefix`, skipping hidden folders and
/// build output (Cargo's, bin/'s, Bazel's `bazel-*` links); stops at nested
/// Bazel packages unless `into_packages`.
pub fn walk(directory: &Path, prefix: &str, into_packages: bool, found: &mut Vec<String>) {
    for entry in fs::read_dir(directory).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        let output = ["target", "out"].contains(&name.as_str()) || name.starts_with("bazel-");
        let nested = entry.path().join("BUILD.bazel").exists() && !into_packages;
        if !entry.path().is_dir() {
            found.push(path);
        } else if !name.starts_with('.') && !output && !nested {
            walk(&entry.path(), &format!("{path}/"), into_packages, found);
        }
    }
}

pub fn read(path: &Path) -> (Vec<Rule>, BTreeMap<String, String>) {
    let source = fs::read_to_string(path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    read_rules(&source).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

pub fn load() -> (Vec<Package>, Bazel) {
    let root = workspace_root();
    let mut files = Vec::new();
    walk(&root, "", true, &mut files);
    let packages = files.iter().filter_map(|file| {
        let package = file.strip_suffix("BUILD.bazel")?.trim_end_matches('/');
        Some((package.to_owned(), read(&root.join(file)).0))
    });
    let (module, module_assignments) = read(&root.join("MODULE.bazel"));
    let bazel = Bazel {
        packages: packages.collect(),
        module,
        module_assignments,
        root: root.clone(),
    };
    (cargo_packages(&root), bazel)
}

/// `label`, written in `package`, as (package, name); `None` for a label of
/// another repository.
pub fn local_label(package: &str, label: &str) -> Option<(String, String)> {
    let label = label.strip_prefix('@').unwrap_or(label);
    if let Some(name) = label.strip_prefix(':') {
        return Some((package.to_owned(), name.to_owned()));
    }
    let absolute = label.strip_prefix("//")?;
    let (package, name) = absolute
        .split_once(':')
        .unwrap_or((absolute, absolute.rsplit('/').next().unwrap_or_default()));
    Some((package.to_owned(), name.to_owned()))
}

impl Bazel {
    pub fn rules(&self, package: &str) -> impl Iterator<Item = &Rule> {
        self.packages.get(package).into_iter().flatten()
    }

    pub fn rule(&self, package: &str, name: &str) -> Option<&Rule> {
        self.rules(package).find(|rule| rule.name() == name)
    }

    /// Why `label` (written in `package`) names nothing, if it does not.
    pub fn missing(&self, package: &str, label: &str) -> Option<String> {
        let (package, name) = local_label(package, label)?;
        if ["visibility", "conditions"].contains(&package.as_str()) || name.starts_with("__") {
            None
        } else if !self.packages.contains_key(&package) {
            Some(format!("`{label}`: there is no {package}/BUILD.bazel"))
        } else if self.rule(&package, &name).is_none()
            && !self.root.join(&package).join(&name).exists()
        {
            Some(format!(
                "`{label}`: no rule or file `{name}` in //{package}"
            ))
        } else {
            None
        }
    }
}

/// Whether `path` matches the Bazel glob `pattern`.
pub fn glob_matches(pattern: &str, path: &str) -> bool {
    pub fn names(pattern: &[&str], path: &[&str]) -> bool {
        match (pattern.split_first(), path.split_first()) {
            (None, _) => path.is_empty(),
            (Some((&"**", rest)), _) => (0..=path.len()).any(|skip| names(rest, &path[skip..])),
            (Some((first, rest)), Some((name, tail))) => {
                name_matches(first.as_bytes(), name.as_bytes()) && names(rest, tail)
            }
            (Some(_), None) => false,
        }
    }
    pub fn name_matches(pattern: &[u8], name: &[u8]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some((b'*', rest)) => (0..=name.len()).any(|skip| name_matches(rest, &name[skip..])),
            Some((byte, rest)) => name
                .split_first()
                .is_some_and(|(first, tail)| first == byte && name_matches(rest, tail)),
        }
    }
    names(
        &pattern.split('/').collect::<Vec<_>>(),
        &path.split('/').collect::<Vec<_>>(),
    )
}

// For the tests that break the real workspace in memory to see a check bite.

pub fn rule_mut<'a>(bazel: &'a mut Bazel, package: &str, name: &str) -> &'a mut Rule {
    let rules = bazel.packages.get_mut(package).expect("the package");
    rules
        .iter_mut()
        .find(|rule| rule.name() == name)
        .expect("the rule")
}

pub fn set_attribute(rule: &mut Rule, key: &str, value: &str) {
    rule.attributes.retain(|(name, _)| name != key);
    rule.attributes.push((key.into(), value.into()));
}

pub fn assert_reported(problems: &[String], needle: &str) {
    let found = problems.iter().any(|problem| problem.contains(needle));
    assert!(found, "no problem mentions {needle:?}: {problems:#?}");
}
