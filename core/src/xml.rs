//! A small XML reader for the answers of the multipart API: parses a body
//! into a tree of elements with their text, ignoring attributes.

use quick_xml::Reader;
use quick_xml::events::Event;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of a direct child, if present.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

/// Deepest nesting taken. The API's answers go three levels deep; a tree
/// much deeper is not one of them, and would be dropped recursively, so a
/// body of a million nested elements would overflow the thread's stack and
/// end the process.
const MAX_DEPTH: usize = 64;

/// Parses `body` and returns its root element; `None` when it is not XML
/// (or nests deeper than [`MAX_DEPTH`]).
pub fn parse(body: &[u8]) -> Option<Element> {
    let mut reader = Reader::from_reader(body);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                if stack.len() >= MAX_DEPTH {
                    return None;
                }
                stack.push(Element { name: local_name(e.name().as_ref()), ..Default::default() });
            }
            Ok(Event::Empty(e)) => {
                let el = Element { name: local_name(e.name().as_ref()), ..Default::default() };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Ok(Event::Text(t)) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml_content().ok()?);
                }
            }
            Ok(Event::GeneralRef(r)) => {
                if let Some(top) = stack.last_mut() {
                    let name = r.decode().ok()?;
                    let resolved = match name.as_ref() {
                        "amp" => "&".to_string(),
                        "lt" => "<".to_string(),
                        "gt" => ">".to_string(),
                        "quot" => "\"".to_string(),
                        "apos" => "'".to_string(),
                        other => char_ref(other)?.to_string(),
                    };
                    top.text.push_str(&resolved);
                }
            }
            Ok(Event::CData(t)) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Ok(Event::End(_)) => {
                let el = stack.pop()?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    if !stack.is_empty() {
        return None;
    }
    root
}

fn char_ref(name: &str) -> Option<char> {
    let code = if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
        u32::from_str_radix(hex, 16).ok()?
    } else {
        name.strip_prefix('#')?.parse().ok()?
    };
    char::from_u32(code)
}

fn local_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    match s.rfind(':') {
        Some(i) => s[i + 1..].to_string(),
        None => s.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_nested_a_million_deep_is_not_xml_we_take_and_does_not_overflow_the_stack() {
        let depth = 1_000_000;
        let body = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        // On a thread with a small stack, as the async threads have.
        let parsed = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || parse(body.as_bytes()).is_some()).unwrap().join();
        assert_eq!(parsed.ok(), Some(false));
        let ok = format!("{}x{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).is_some(), "as deep as allowed still parses");
    }

    #[test]
    fn reads_nested_elements_entities_and_lists() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>a &amp; b</Key>
<Part><PartNumber>1</PartNumber><ETag>&quot;abc&quot;</ETag><Size>5</Size></Part>
<Part><PartNumber>2</PartNumber><ETag>"def"</ETag><Size>6</Size></Part><Empty/></ListPartsResult>"#;
        let root = parse(body).unwrap();
        assert_eq!(root.name, "ListPartsResult");
        assert_eq!(root.text_of("Key"), Some("a & b"));
        let parts: Vec<_> = root.children_named("Part").map(|p| p.text_of("ETag").unwrap().to_string()).collect();
        assert_eq!(parts, vec!["\"abc\"", "\"def\""]);
        assert_eq!(root.text_of("Empty"), Some(""));
    }

    #[test]
    fn garbage_is_none() {
        assert!(parse(b"<a><b></a>").is_none());
        assert!(parse(b"").is_none());
    }
}
