//! Wildcard lists: `themes/wildcards/**/*.txt` (one entry a line, `#` comments and blank
//! lines skipped) plus a theme's own word lists. `__name__` picks an entry; a name may be
//! a glob (`__colors/*__`, `__*__`) that merges every list it matches, as dynamicprompts does.
//! Entries are templates themselves, so wildcards nest; cycles are found before expanding.

use crate::error::TemplateError;
use crate::template::{Node, Template, WildcardRef};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One named list; each entry already parsed.
#[derive(Debug, Clone)]
pub struct WildcardList {
    /// Where the list came from, for messages (`wildcards/colors.txt`, `theme.yaml words.x`).
    pub source: String,
    pub entries: Vec<Template>,
}

/// Every list a template may name, keyed by name (`colors`, `colors/warm`).
#[derive(Debug, Clone, Default)]
pub struct Wildcards {
    lists: BTreeMap<String, WildcardList>,
}

impl Wildcards {
    pub fn new() -> Wildcards {
        Wildcards::default()
    }

    /// Reads every `*.txt` under `dir` (recursively; `sub/x.txt` is named `sub/x`). A missing
    /// folder gives an empty set.
    pub fn load_dir(dir: &Path) -> Result<Wildcards, TemplateError> {
        let mut set = Wildcards::new();
        if dir.is_dir() {
            set.load_tree(dir, dir)?;
        }
        Ok(set)
    }

    fn load_tree(&mut self, root: &Path, dir: &Path) -> Result<(), TemplateError> {
        let read_err = |path: &Path, e: std::io::Error| TemplateError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| read_err(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                self.load_tree(root, &path)?;
            } else if path.extension().is_some_and(|x| x == "txt") {
                let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
                let rel = path.strip_prefix(root).unwrap_or(&path).with_extension("");
                let name = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                let source = format!("wildcards/{name}.txt");
                self.add_text(&name, &source, &text)?;
            }
        }
        Ok(())
    }

    /// Adds a list from file text: one entry a line, `#` comments and blank lines skipped.
    pub fn add_text(&mut self, name: &str, source: &str, text: &str) -> Result<(), TemplateError> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            entries.push(Template::parse(trimmed, source, index + 1)?);
        }
        self.lists.insert(
            name.to_string(),
            WildcardList {
                source: source.to_string(),
                entries,
            },
        );
        Ok(())
    }

    /// Adds (or replaces) a list from separate entries, e.g. a theme's own words; entry `i`
    /// is reported as line `i + 1` of `source`.
    pub fn add_entries(
        &mut self,
        name: &str,
        source: &str,
        entries: &[String],
    ) -> Result<(), TemplateError> {
        let parsed = entries
            .iter()
            .enumerate()
            .map(|(i, e)| Template::parse(e.trim(), source, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        self.lists.insert(
            name.to_string(),
            WildcardList {
                source: source.to_string(),
                entries: parsed,
            },
        );
        Ok(())
    }

    /// The names of every list, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.lists.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&WildcardList> {
        self.lists.get(name)
    }

    /// The names a reference matches, sorted; an unknown name or a glob matching nothing is
    /// an error naming the reference's place.
    pub fn matching(&self, wildcard: &WildcardRef) -> Result<Vec<&str>, TemplateError> {
        let name = wildcard.name.trim_matches('/');
        let found: Vec<&str> = if wildcard.is_glob() {
            self.names().filter(|n| glob_match(name, n)).collect()
        } else {
            self.lists
                .get_key_value(name)
                .map(|(k, _)| k.as_str())
                .into_iter()
                .collect()
        };
        if found.is_empty() {
            return Err(TemplateError::UnknownWildcard {
                at: wildcard.at.clone(),
                name: wildcard.name.clone(),
                hint: self.hint(),
            });
        }
        Ok(found)
    }

    /// Every entry a reference can pick, in list-name then line order.
    pub fn entries(&self, wildcard: &WildcardRef) -> Result<Vec<&Template>, TemplateError> {
        let names = self.matching(wildcard)?;
        Ok(names
            .into_iter()
            .filter_map(|n| self.lists.get(n))
            .flat_map(|list| list.entries.iter())
            .collect())
    }

    fn hint(&self) -> String {
        if self.lists.is_empty() {
            "there are no wildcard lists (put NAME.txt files in themes/wildcards/)".to_string()
        } else {
            let names: Vec<&str> = self.names().collect();
            format!("known: {}", names.join(", "))
        }
    }

    /// Checks that every wildcard `template` reaches exists and that none refers back to
    /// itself through any chain (a → b → a), whichever entries random mode would pick.
    pub fn check(&self, template: &Template) -> Result<(), TemplateError> {
        let mut done = BTreeSet::new();
        let mut stack = Vec::new();
        self.check_nodes(&template.nodes, &mut stack, &mut done)
    }

    fn check_nodes<'s>(
        &'s self,
        nodes: &'s [Node],
        stack: &mut Vec<&'s str>,
        done: &mut BTreeSet<&'s str>,
    ) -> Result<(), TemplateError> {
        for node in nodes {
            match node {
                Node::Text(_) => {}
                Node::Variant(v) => {
                    for option in &v.options {
                        self.check_nodes(&option.body, stack, done)?;
                    }
                }
                Node::Wildcard(w) => {
                    for name in self.matching(w)? {
                        if stack.contains(&name) {
                            let mut chain: Vec<&str> = stack.clone();
                            chain.push(name);
                            return Err(TemplateError::CyclicWildcard {
                                at: w.at.clone(),
                                chain: chain
                                    .iter()
                                    .map(|n| format!("__{n}__"))
                                    .collect::<Vec<_>>()
                                    .join(" → "),
                            });
                        }
                        if done.contains(name) {
                            continue;
                        }
                        stack.push(name);
                        if let Some(list) = self.lists.get(name) {
                            for entry in &list.entries {
                                self.check_nodes(&entry.nodes, stack, done)?;
                            }
                        }
                        stack.pop();
                        done.insert(name);
                    }
                }
            }
        }
        Ok(())
    }
}

/// fnmatch-style matching: `*` any run of characters (slashes included, as fnmatch does),
/// `?` exactly one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}
