//! Just enough XML to compare D-Bus introspection documents: tags and
//! attributes, ignoring the prolog, the doctype, comments, whitespace,
//! attribute order, and the difference between `<a/>` and `<a></a>`.
//! Introspection data has no text content; any is ignored.

/// One element of a document, in a canonical spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// `<name a="1" b="2">`, attributes sorted by name.
    Open {
        name: String,
        canon: String,
    },
    Close(String),
}

fn parse_attrs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("attribute without '=': {rest}"))?;
        let key = rest[..eq].trim().to_owned();
        let after = rest[eq + 1..].trim_start();
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| format!("unquoted attribute value: {after}"))?;
        let end = after[1..]
            .find(quote)
            .ok_or_else(|| format!("unterminated attribute value: {after}"))?;
        out.push((key, after[1..1 + end].to_owned()));
        rest = after[end + 2..].trim_start();
    }
    out.sort();
    Ok(out)
}

fn tokenize(xml: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt..];
        if let Some(r) = rest.strip_prefix("<!--") {
            let end = r.find("-->").ok_or("unterminated comment")?;
            rest = &r[end + 3..];
            continue;
        }
        let gt = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            toks.push(Tok::Close(name.trim().to_owned()));
            continue;
        }
        let (body, empty) = match tag.strip_suffix('/') {
            Some(b) => (b, true),
            None => (tag, false),
        };
        let body = body.trim();
        let (name, attrs) = match body.find(char::is_whitespace) {
            Some(i) => (&body[..i], &body[i..]),
            None => (body, ""),
        };
        let attrs = parse_attrs(attrs)?;
        let mut canon = format!("<{name}");
        for (k, v) in &attrs {
            canon.push_str(&format!(" {k}=\"{v}\""));
        }
        canon.push('>');
        toks.push(Tok::Open {
            name: name.to_owned(),
            canon,
        });
        if empty {
            toks.push(Tok::Close(name.to_owned()));
        }
    }
    Ok(toks)
}

/// The interfaces declared directly on the document's root node (not
/// those of child nodes), each as its name and canonical lines (one per
/// tag, indented by depth).
pub fn interfaces(xml: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let toks = tokenize(xml)?;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut depth = 0usize;
    // (index into out, depth of the interface element)
    let mut current: Option<usize> = None;
    for t in &toks {
        match t {
            Tok::Open { name, canon } => {
                depth += 1;
                if depth == 2 && name == "interface" {
                    let iname = canon
                        .split("name=\"")
                        .nth(1)
                        .and_then(|s| s.split('"').next())
                        .unwrap_or("")
                        .to_owned();
                    out.push((iname, Vec::new()));
                    current = Some(out.len() - 1);
                }
                if let Some(i) = current {
                    out[i].1.push(format!("{}{canon}", "  ".repeat(depth - 2)));
                }
            }
            Tok::Close(name) => {
                if let Some(i) = current {
                    out[i]
                        .1
                        .push(format!("{}</{name}>", "  ".repeat(depth - 2)));
                }
                if depth == 2 && current.is_some() {
                    current = None;
                }
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced </{name}>"))?;
            }
        }
    }
    if depth != 0 {
        return Err("unbalanced document".into());
    }
    Ok(out)
}

/// The canonical form of interface `name` declared on the root node of
/// `xml`, one tag a line; `None` if it is not there.
pub fn interface(xml: &str, name: &str) -> Result<Option<String>, String> {
    Ok(interfaces(xml)?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, lines)| lines.join("\n")))
}

/// The names of the child nodes of the root node.
pub fn child_nodes(xml: &str) -> Result<Vec<String>, String> {
    let toks = tokenize(xml)?;
    let mut depth = 0usize;
    let mut out = Vec::new();
    for t in &toks {
        match t {
            Tok::Open { name, canon } => {
                depth += 1;
                if depth == 2 && name == "node" {
                    if let Some(n) = canon
                        .split("name=\"")
                        .nth(1)
                        .and_then(|s| s.split('"').next())
                    {
                        out.push(n.to_owned());
                    }
                }
            }
            Tok::Close(_) => depth = depth.saturating_sub(1),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let a = r#"<?xml version="1.0"?>
<!DOCTYPE node PUBLIC "x" "y">
<!-- a comment with <tags/> -->
<node>
  <interface name="org.x.A">
    <method name="M"><arg type="s" direction="in" name="s"/></method>
    <method name="P">
    </method>
  </interface>
  <interface name="org.x.B"/>
  <node name="child"><interface name="org.x.C"/></node>
</node>"#;
        let b = r#"<node><interface name="org.x.A"><method name="M">
            <arg name="s"   direction="in" type="s"></arg></method><method name="P"/>
            </interface></node>"#;
        assert_eq!(interface(a, "org.x.A"), interface(b, "org.x.A"));
        assert!(interface(a, "org.x.A").unwrap().is_some());
        assert_eq!(interface(a, "org.x.C").unwrap(), None);
        assert_eq!(interfaces(a).unwrap().len(), 2);
        assert_eq!(child_nodes(a).unwrap(), vec!["child"]);
        let c = b.replace("direction=\"in\"", "direction=\"out\"");
        assert_ne!(interface(a, "org.x.A"), interface(&c, "org.x.A"));
    }
}
