//! The dependency rules the tree is built on, checked from every `Cargo.toml`:
//! - a service (`services/*`) never depends on another service's crate;
//! - a platform or record crate (`crates/*`) never depends on a service or a harness;
//! - the harnesses (`testing/*`) and icnctl never depend on a service: they start service
//!   binaries as processes and speak to them over gRPC, and share records through the
//!   record crates;
//! - the workspace names no service among its shared dependencies.
//!
//! Every kind of dependency counts (normal, dev, build, target-specific): a service's test
//! that links another service is the same coupling as its code doing so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Service,
    Platform,
    Harness,
    Client,
}

struct Package {
    name: String,
    manifest: PathBuf,
    layer: Layer,
    /// Names of every internal (`icn-*`) dependency, of any kind.
    internal: Vec<String>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Dependency names in every dependency table of a manifest (and its `target.*` tables).
fn dependency_names(manifest: &toml::Table) -> Vec<String> {
    let mut tables = Vec::new();
    for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(t) = manifest.get(key).and_then(|v| v.as_table()) {
            tables.push(t);
        }
    }
    if let Some(targets) = manifest.get("target").and_then(|v| v.as_table()) {
        for target in targets.values().filter_map(|v| v.as_table()) {
            for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
                if let Some(t) = target.get(key).and_then(|v| v.as_table()) {
                    tables.push(t);
                }
            }
        }
    }
    tables
        .into_iter()
        .flat_map(|t| {
            t.iter().map(|(name, spec)| {
                // `alias = { package = "real-name", ... }` depends on `real-name`.
                spec.get("package").and_then(|p| p.as_str()).unwrap_or(name).to_string()
            })
        })
        .collect()
}

fn packages() -> Vec<Package> {
    let root = workspace();
    let members = read_toml(&root.join("Cargo.toml"))["workspace"]["members"]
        .as_array()
        .expect("workspace members")
        .iter()
        .map(|m| m.as_str().expect("member path").to_string())
        .collect::<Vec<_>>();
    members
        .iter()
        .map(|member| {
            let layer = match member.split('/').next() {
                Some("services") => Layer::Service,
                Some("crates") => Layer::Platform,
                Some("testing") => Layer::Harness,
                Some("icnctl") => Layer::Client,
                other => panic!("workspace member `{member}` is in {other:?}, which is no layer of the tree"),
            };
            let manifest_path = root.join(member).join("Cargo.toml");
            let manifest = read_toml(&manifest_path);
            let name = manifest["package"]["name"].as_str().expect("package name").to_string();
            let internal = dependency_names(&manifest).into_iter().filter(|d| d.starts_with("icn-")).collect();
            Package { name, manifest: manifest_path, layer, internal }
        })
        .collect()
}

#[test]
fn no_service_crate_is_linked_by_anything_but_itself() {
    let packages = packages();
    let layer_of: BTreeMap<&str, Layer> = packages.iter().map(|p| (p.name.as_str(), p.layer)).collect();
    assert!(layer_of.values().filter(|l| **l == Layer::Service).count() >= 5, "the five services are members");
    let mut broken = Vec::new();
    for package in &packages {
        for dep in &package.internal {
            let Some(&dep_layer) = layer_of.get(dep.as_str()) else {
                broken.push(format!("{} depends on `{dep}`, which is no workspace member", package.manifest.display()));
                continue;
            };
            let allowed = match (package.layer, dep_layer) {
                (_, Layer::Service) => false,
                (Layer::Platform, Layer::Harness | Layer::Client) => false,
                (Layer::Service | Layer::Client, Layer::Harness) => true, // dev-dependencies: tests start nodes
                (Layer::Service | Layer::Client, Layer::Client) => false,
                (Layer::Harness, Layer::Client) => false,
                _ => true,
            };
            if !allowed {
                broken.push(format!(
                    "{} ({:?}) depends on `{dep}` ({dep_layer:?})",
                    package.manifest.display(),
                    package.layer
                ));
            }
        }
    }
    assert!(broken.is_empty(), "the dependency rules are broken:\n{}", broken.join("\n"));
}

#[test]
fn the_workspace_shares_no_service_as_a_dependency() {
    let root = workspace();
    let manifest = read_toml(&root.join("Cargo.toml"));
    let shared = manifest["workspace"]["dependencies"].as_table().expect("workspace dependencies");
    let into_services: Vec<_> = shared
        .iter()
        .filter(|(_, spec)| spec.get("path").and_then(|p| p.as_str()).is_some_and(|p| p.starts_with("services/")))
        .map(|(name, _)| name.clone())
        .collect();
    assert!(into_services.is_empty(), "workspace dependencies point into services/: {into_services:?}");
}

#[test]
fn the_rule_catches_a_service_that_links_another() {
    // The check above must be able to fail: a manifest of the shape that once linked the
    // ledger into the gateway's tests is seen as depending on a service.
    let manifest: toml::Table = r#"
        [package]
        name = "icn-gateway"
        [dev-dependencies]
        ledger = { package = "icn-ledger", path = "../ledger" }
        [target.'cfg(unix)'.dependencies]
        icn-gossip = { path = "../gossip" }
    "#
    .parse()
    .unwrap();
    let deps = dependency_names(&manifest);
    assert!(deps.contains(&"icn-ledger".to_string()) && deps.contains(&"icn-gossip".to_string()), "{deps:?}");
}

/// Every Rust source file of the platform, the services, the harnesses and icnctl (not
/// their `tests/` folders), with its path relative to the workspace.
fn source_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = workspace();
    let mut files = Vec::new();
    for package in packages() {
        walk(&package.manifest.parent().unwrap().join("src"), &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path.strip_prefix(&root).unwrap().display().to_string(), text)
        })
        .collect()
}

/// Longest source file, in lines, that needs no word in its header on why it is longer.
const MAX_LINES: usize = 500;

#[test]
fn a_source_file_over_500_lines_says_why_in_its_header() {
    let unexplained: Vec<String> = source_files()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .filter(|(_, text)| {
            let header: String = text.lines().take_while(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n");
            !header.contains("over 500 lines because")
        })
        .map(|(path, text)| format!("{path}: {} lines", text.lines().count()))
        .collect();
    assert!(
        unexplained.is_empty(),
        "split these by job, or say in the `//!` header why one file is right (\"over 500 lines because …\"):\n{}",
        unexplained.join("\n")
    );
}

/// The modules a file refers to through `crate::`: `crate::a::…` and `crate::{a, b::…}`.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            group.split('}').next().unwrap_or("").split(',').collect()
        } else {
            vec![rest]
        };
        for name in names {
            let ident: String = name.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // Lower-case names are modules; capitalised ones are the crate root's re-exports.
            if ident.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                modules.insert(ident);
            }
        }
    }
    modules
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let mut loops = Vec::new();
    for package in packages() {
        let src = package.manifest.parent().unwrap().join("src");
        // Edges between the crate's top-level modules (a file `x.rs` or a folder `x/`).
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, text) in source_files() {
            let Ok(relative) = workspace().join(&path).strip_prefix(&src).map(Path::to_path_buf) else { continue };
            let first =
                relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            if first == "lib" || first == "main" || first == "bin" {
                continue;
            }
            // Test modules may reach anywhere, and doc links are no imports: only the
            // code's own references count.
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let code = code.as_str();
            for module in crate_references(code) {
                if module != first {
                    edges.entry(first.clone()).or_default().insert(module);
                }
            }
        }
        // A loop is a path from a module back to itself.
        for start in edges.keys() {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((at, path)) = stack.pop() {
                for next in edges.get(&at).into_iter().flatten() {
                    if next == start {
                        let mut cycle = path.clone();
                        cycle.push(start.clone());
                        loops.push(format!("{}: {}", package.name, cycle.join(" → ")));
                    } else if seen.insert(next.clone()) {
                        let mut longer = path.clone();
                        longer.push(next.clone());
                        stack.push((next.clone(), longer));
                    }
                }
            }
        }
    }
    loops.sort();
    loops.dedup();
    assert!(loops.is_empty(), "import loops between the modules of a crate:\n{}", loops.join("\n"));
}

#[test]
fn crate_references_are_read_from_both_import_forms() {
    let text = "use crate::engine::{Ledger, Status};\nuse crate::{model::AdminEntry, store, NetError};\nfn f() { crate::signed::hash(); }";
    let found: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(found, ["engine", "model", "signed", "store"]);
}
