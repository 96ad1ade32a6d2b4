//! Keeps the server's top-level modules free of import circles: no module may use one that
//! uses it back, directly or through others.
//!
//! The test reads the crate's source files, collects every `crate::<module>` path outside
//! comments and string literals (`crate::{a, b}` groups included, and names the crate root
//! re-exports counted as the module they come from), and fails naming the first cycle it finds
//! with a place that makes each step. A second test keeps the `redis` crate inside `cluster`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `from -> to -> where` (the first `file:line` seen for that step).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The code of a Rust file with comments and the contents of string and char literals blanked
/// (lines kept, so positions still name the right line).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    // Blanks `chars[from..to]`, keeping newlines.
    let blank = |out: &mut String, from: usize, to: usize| {
        for &c in &chars[from..to.min(chars.len())] {
            out.push(if c == '\n' { '\n' } else { ' ' });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        // Whether `c` continues an identifier (`br"…"` is a raw string, `bar"…` is not).
        let ident_before = |at: usize| at > 0 && is_ident(chars[at - 1]);
        let byte_prefix = i > 0 && chars[i - 1] == 'b' && !ident_before(i - 1);
        let prev_ident = ident_before(i) && !byte_prefix;
        if c == '/' && next == Some('/') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            let mut j = i;
            while j < chars.len() {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == 'r' && !prev_ident && matches!(next, Some('"' | '#')) {
            // A raw string: r"…", r#"…"#, …
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body = i + 2 + hashes;
            let rest: String = chars[body..].iter().collect();
            let end = rest.find(&close).map_or(chars.len(), |p| {
                body + rest[..p].chars().count() + close.len()
            });
            blank(&mut out, i, end);
            i = end;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a, 'static).
            let end = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map(|p| i + 2 + p + 1)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The first segments of every `crate::…` path in `code`, with their line numbers.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d}`: the first segment of each item at the group's top level.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && is_ident(c) => {
                        let name: String =
                            group[i..].chars().take_while(|&c| is_ident(c)).collect();
                        found.push((name, line));
                        item_start = false;
                    }
                    c if c.is_whitespace() => {}
                    _ => item_start = false,
                }
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                found.push((name, line));
            }
        }
    }
    found
}

/// Names the crate root re-exports (`pub use config::ServerConfig;`), by the module they are from.
fn root_reexports(lib_code: &str, modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for statement in lib_code.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        if !modules.contains(module.trim()) {
            continue;
        }
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.rsplit(" as ").next().unwrap_or(item);
            let name = name.rsplit("::").next().unwrap_or(name).trim();
            if !name.is_empty() {
                names.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {dir:?}: {e}"));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("reading {dir:?}: {e}"))
            .path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The graph of `crate::` references between the top-level modules under `src`.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let top_level = |file: &Path| -> Option<String> {
        let first = file.strip_prefix(src).ok()?.components().next()?;
        let name = first.as_os_str().to_str()?;
        let name = name.strip_suffix(".rs").unwrap_or(name);
        (name != "lib").then(|| name.to_owned())
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_level(f)).collect();
    let read = |file: &Path| {
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {file:?}: {e}"))
    };
    let reexports = root_reexports(&code_only(&read(&src.join("lib.rs"))), &modules);
    let mut graph = Graph::new();
    for file in &files {
        let Some(from) = top_level(file) else {
            continue;
        };
        let edges = graph.entry(from.clone()).or_default();
        for (name, line) in crate_paths(&code_only(&read(file))) {
            let to = if modules.contains(&name) {
                name
            } else if let Some(module) = reexports.get(&name) {
                module.clone()
            } else {
                continue;
            };
            if to != from {
                let place = format!(
                    "{}:{line}",
                    file.strip_prefix(src).unwrap_or(file).display()
                );
                edges.entry(to).or_insert(place);
            }
        }
    }
    graph
}

/// A cycle in `graph` as the modules along it (first repeated at the end), if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    // Guards against a parser that finds nothing: handlers do use the shared state.
    assert!(
        graph.get("api").is_some_and(|to| to.contains_key("state")),
        "the module graph looks empty: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|step| {
                format!(
                    "  {} -> {} ({})",
                    step[0], step[1], graph[&step[0]][&step[1]]
                )
            })
            .collect();
        panic!(
            "modules of the server use each other in a circle: {}\n{}",
            cycle.join(" -> "),
            steps.join("\n")
        );
    }
}

#[test]
fn only_the_cluster_talks_to_redis() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let cluster = src.join("cluster");
    let mut outside = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&cluster)) {
        let source =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {file:?}: {e}"));
        let code = code_only(&source);
        for (at, _) in code.match_indices("redis::") {
            if !code[..at].chars().next_back().is_some_and(is_ident) {
                let line = code[..at].matches('\n').count() + 1;
                outside.push(format!(
                    "{}:{line}",
                    file.strip_prefix(&src).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(
        outside.is_empty(),
        "Redis used outside the cluster module: {outside:?}"
    );
}

#[test]
fn references_are_found_in_code_only() {
    let code = code_only(
        r##"
use crate::hub::Hub; // crate::commented
use crate::{api::ApiJson, state, keys::{self, Keys}};
/* crate::blocked /* nested crate::deeper */ */
const S: &str = "crate::quoted \" crate::escaped";
const R: &str = r#"crate::raw "quote" "#; const B: &[u8] = br"crate::bytes\";
fn f<'a>(c: char) -> bool { c == '"' || other_crate::x() }
let t = crate::tunnel::TunnelConfig::default();
"##,
    );
    let names: Vec<(String, usize)> = crate_paths(&code);
    let expected = [
        ("hub", 2),
        ("api", 3),
        ("state", 3),
        ("keys", 3),
        ("tunnel", 8),
    ];
    assert_eq!(
        names,
        expected.map(|(n, l)| (n.to_owned(), l)).to_vec(),
        "from:\n{code}"
    );
}

#[test]
fn a_cycle_is_named() {
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")] {
        graph
            .entry(from.to_owned())
            .or_default()
            .insert(to.to_owned(), "x.rs:1".to_owned());
    }
    assert_eq!(
        find_cycle(&graph),
        Some(["a", "b", "c", "a"].map(str::to_owned).to_vec())
    );
    graph.remove("c");
    assert_eq!(find_cycle(&graph), None);
}
