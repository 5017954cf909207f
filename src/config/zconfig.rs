//! A parser for the ZConfig syntax `runzeo` reads (`zeo.conf`): nested
//! `<type [name]> … </type>` sections, `key value` lines, `#` comments,
//! `%define NAME VALUE` with `$NAME` / `${NAME}` substitution and `%import`.
//! It yields an untyped tree with line numbers; `config::schema` gives it
//! meaning.

use std::collections::HashMap;

/// One `<type [name]> … </type>` section (the whole file is an unnamed root).
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// Lower-cased section type (`zeo`, `filestorage`, …).
    pub kind: String,
    /// The section name as written (`<filestorage 1>` → `1`).
    pub name: Option<String>,
    /// Line of the opening tag (0 for the root).
    pub line: usize,
    pub keys: Vec<Key>,
    pub sections: Vec<Section>,
    /// Packages named by `%import` (root only).
    pub imports: Vec<(String, usize)>,
}

/// One `key value` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Lower-cased, `_` spelled as `-` (ZConfig treats them alike).
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// A syntax error, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        line,
        message: message.into(),
    }
}

/// Parses a whole configuration text.
pub fn parse(text: &str) -> Result<Section, SyntaxError> {
    let mut defines: HashMap<String, String> = HashMap::new();
    let mut stack: Vec<Section> = vec![Section {
        kind: String::new(),
        name: None,
        line: 0,
        keys: Vec::new(),
        sections: Vec::new(),
        imports: Vec::new(),
    }];
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(directive) = trimmed.strip_prefix('%') {
            let (word, rest) = split_word(directive);
            match word.to_ascii_lowercase().as_str() {
                "define" => {
                    let (name, value) = split_word(rest);
                    if name.is_empty() {
                        return Err(error(line, "%define needs a name"));
                    }
                    let value = substitute(value, &defines, line)?;
                    defines.insert(name.to_ascii_lowercase(), value);
                }
                "import" => {
                    if rest.is_empty() {
                        return Err(error(line, "%import needs a package name"));
                    }
                    stack[0].imports.push((rest.to_string(), line));
                }
                other => return Err(error(line, format!("unsupported directive %{other}"))),
            }
            continue;
        }
        if let Some(tag) = trimmed.strip_prefix('<') {
            let tag = tag
                .strip_suffix('>')
                .ok_or_else(|| error(line, format!("malformed section tag {trimmed:?}")))?
                .trim();
            if let Some(closing) = tag.strip_prefix('/') {
                let kind = closing.trim().to_ascii_lowercase();
                if stack.len() == 1 {
                    return Err(error(line, format!("</{kind}> without an open section")));
                }
                let section = stack
                    .pop()
                    .ok_or_else(|| error(line, "unbalanced sections"))?;
                if section.kind != kind {
                    return Err(error(
                        line,
                        format!(
                            "</{kind}> closes <{}> opened on line {}",
                            section.kind, section.line
                        ),
                    ));
                }
                push_section(&mut stack, section, line)?;
                continue;
            }
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(tag) => (tag.trim(), true),
                None => (tag, false),
            };
            let (kind, name) = split_word(tag);
            if kind.is_empty() {
                return Err(error(line, "section tag without a type"));
            }
            let name = match name {
                "" => None,
                name => Some(substitute(name, &defines, line)?),
            };
            let section = Section {
                kind: kind.to_ascii_lowercase(),
                name,
                line,
                keys: Vec::new(),
                sections: Vec::new(),
                imports: Vec::new(),
            };
            if empty {
                push_section(&mut stack, section, line)?;
            } else {
                stack.push(section);
            }
            continue;
        }
        let (name, value) = split_word(trimmed);
        let value = substitute(value, &defines, line)?;
        let current = stack
            .last_mut()
            .ok_or_else(|| error(line, "unbalanced sections"))?;
        current.keys.push(Key {
            name: name.to_ascii_lowercase().replace('_', "-"),
            value,
            line,
        });
    }
    if stack.len() > 1 {
        let open = &stack[stack.len() - 1];
        return Err(error(open.line, format!("<{}> is never closed", open.kind)));
    }
    stack.pop().ok_or_else(|| error(0, "empty configuration"))
}

fn push_section(stack: &mut [Section], section: Section, line: usize) -> Result<(), SyntaxError> {
    stack
        .last_mut()
        .ok_or_else(|| error(line, "unbalanced sections"))?
        .sections
        .push(section);
    Ok(())
}

/// Splits off the first whitespace-separated word; the rest is trimmed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], text[at..].trim()),
        None => (text, ""),
    }
}

/// Replaces `$name` and `${name}` by `%define`d values; `$$` is a dollar.
fn substitute(
    value: &str,
    defines: &HashMap<String, String>,
    line: usize,
) -> Result<String, SyntaxError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let name: String = match chars.peek() {
            Some('$') => {
                chars.next();
                out.push('$');
                continue;
            }
            Some('{') => {
                chars.next();
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(error(line, "unterminated ${…} reference")),
                    }
                }
                name
            }
            _ => {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                name
            }
        };
        if name.is_empty() {
            return Err(error(line, "a lone $ (write $$ for a dollar sign)"));
        }
        match defines.get(&name.to_ascii_lowercase()) {
            Some(value) => out.push_str(value),
            None => return Err(error(line, format!("${name} is not %define'd"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_keys_and_defines() {
        let text = "%define DIR /var/zeo\n%import ZODB.tests\n# comment\n<zeo>\n  address 127.0.0.1:8100\n  Read_Only true\n</zeo>\n<blobstorage 1>\n  blob-dir ${DIR}/blobs\n  <filestorage>\n    path $DIR/Data.fs\n  </filestorage>\n</blobstorage>\n<mappingstorage x/>\n";
        let root = parse(text).unwrap();
        assert_eq!(root.imports, vec![("ZODB.tests".to_string(), 2)]);
        assert_eq!(root.sections.len(), 3);
        let zeo = &root.sections[0];
        assert_eq!(zeo.kind, "zeo");
        assert_eq!(zeo.keys[1].name, "read-only");
        let blob = &root.sections[1];
        assert_eq!(blob.name.as_deref(), Some("1"));
        assert_eq!(blob.keys[0].value, "/var/zeo/blobs");
        assert_eq!(blob.sections[0].keys[0].value, "/var/zeo/Data.fs");
        assert_eq!(blob.sections[0].keys[0].line, 11);
        assert_eq!(root.sections[2].kind, "mappingstorage");
    }

    #[test]
    fn reports_lines_of_errors() {
        assert_eq!(parse("<zeo>\naddress 1\n").unwrap_err().line, 1);
        assert_eq!(parse("<zeo>\n</filestorage>\n").unwrap_err().line, 2);
        assert_eq!(parse("\n\npath $nope\n").unwrap_err().line, 3);
        assert_eq!(parse("%include other.conf\n").unwrap_err().line, 1);
    }
}
