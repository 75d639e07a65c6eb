//! HTML escaping for the pages stages write (`report.html`, `gallery.html`) and the
//! orchestrator's experiments page: one escaper for them all.

/// `s` made safe as HTML text and as a quoted attribute value (either quote): `&`, `<`, `>`,
/// `"` and `'` become character references.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_text_and_both_attribute_quotes() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        // Already-escaped text is escaped again (the input is text, not markup).
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(escape("a dog — on grass"), "a dog — on grass");
    }
}
