//! The lexical rules of Stanford CoreNLP 3.4.1's `PTBLexer.flex` (the JFlex
//! specification behind `edu.stanford.nlp.process.PTBTokenizer`, the jar that
//! coco-caption / pycocoevalcap shells out to), transcribed to Rust regex
//! syntax.
//!
//! Transcription conventions:
//! * JFlex `%caseless`: literal letters outside character classes match both
//!   cases, letters inside classes only themselves. The patterns below are
//!   written case-sensitively and [`caseless`] expands literal ASCII letters
//!   outside classes to `[xX]`.
//! * JFlex 1.4.3 `%unicode` works on UTF-16 code units, so `[:letter:]` and
//!   `[:digit:]` never match characters outside the Basic Multilingual Plane;
//!   the classes below are intersected with the BMP accordingly.
//! * Rules keep the order of the specification: among matches of equal
//!   length the earliest rule wins, as in JFlex.
//! * Trailing context `r1/r2` is kept as a separate `trail` pattern: the
//!   whole `r1 r2` competes for the longest match, the token is the `r1` part.

use std::collections::HashMap;

/// What a rule does with the text it matched (the JFlex action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Token is the matched text unchanged.
    Text,
    /// Token is the first `n` chars of the match; the rest is lexed again
    /// (`cannot` → `can` + `not`).
    Prefix(usize),
    /// SGML / fraction / phone: spaces become U+00A0.
    SpaceToNbsp,
    /// Phone number: spaces to U+00A0 and parentheses to -LRB-/-RRB-.
    Phone,
    /// Any of the em-dash spellings: `--`.
    MDash,
    /// `&amp;` becomes `&`.
    NormAmp,
    /// Soft hyphens (U+00AD) removed.
    SoftHyphen,
    /// Quote normalisation, `true` when the quote is probably a left quote.
    Quotes(bool),
    /// Unicode vulgar fractions spelled out.
    Fraction,
    /// Currency signs normalised.
    Currency,
    /// Acronym followed by a sentence-initial word.
    Acronym,
    /// Trailing whitespace stripped from the token (a JFlex workaround).
    StripSpace,
    /// Token is the full text, then its last char is lexed again
    /// (`etc.` at a sentence end gives `etc.` and `.`).
    ReLexLast,
    /// Smileys: parentheses normalised.
    Parens,
    /// Fixed replacement text.
    Fixed(&'static str),
    /// Runs of hyphens: 3 or 4 become `--`.
    Hyphens,
    /// Ellipsis: `...`.
    Ellipsis,
    /// Nothing is produced (whitespace, deleted characters).
    Skip,
    /// A line break (a `*NL*` token in the Java tokenizer).
    Newline,
}

/// One lexer rule: `pattern` (or `pattern/trail`) with an action.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) pattern: String,
    pub(crate) trail: Option<String>,
    pub(crate) action: Action,
}

/// Letters and digits as JFlex 1.4.3 saw them (BMP only).
use super::jflex_classes::{DIGIT as DIGIT_CLASS, LETTER as LETTER_CLASS};
const UPPER_CLASS: &str = r"[\p{Lu}&&[\x{0}-\x{FFFF}]]";

/// The macro definitions of `PTBLexer.flex`, in dependency order.
fn macros() -> Vec<(&'static str, String)> {
    let raw: Vec<(&'static str, String)> = vec![
        ("PLETTER", LETTER_CLASS.to_string()),
        ("PDIGIT", DIGIT_CLASS.to_string()),
        ("PUPPER", UPPER_CLASS.to_string()),
        ("ANY", r"[\x{0}-\x{D7FF}\x{E000}-\x{10FFFF}]".to_string()),
        (
            "SGML",
            r#"<(?:[!?][A-Za-z\-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:.\-]*(?:[ ]+(?:[A-Za-z][A-Za-z0-9_:.\-]*|[A-Za-z][A-Za-z0-9_:.\-]*[ ]*=[ ]*(?:'[^']*'|"[^"]*")))*[ ]*/?|/[A-Za-z][A-Za-z0-9_:.\-]*)[ ]*>"#.to_string(),
        ),
        ("SPMDASH", r"&(?:MD|mdash|ndash);|[\x{0096}\x{0097}\x{2013}\x{2014}\x{2015}]".into()),
        ("SPAMP", "&amp;".into()),
        ("SPPUNC", r"&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);".into()),
        ("SPLET", r"&[aeiouAEIOU](?:acute|grave|uml);".into()),
        ("SPACE", r"[ \t\x{00A0}\x{2000}-\x{200A}\x{3000}]".into()),
        ("SPACES", "{SPACE}+".into()),
        ("NEWLINE", r"\r|\r?\n|\x{2028}|\x{2029}|\x{000B}|\x{000C}|\x{0085}".into()),
        ("SPACENL", "{SPACE}|{NEWLINE}".into()),
        ("SPACENLS", "(?:{SPACENL})+".into()),
        ("SENTEND", "(?:{SPACENL})(?:{SPACENL}|{PUPPER}|{SGML})".into()),
        ("DIGIT", "{PDIGIT}".into()),
        ("DATE", r"{DIGIT}{1,2}[\-/]{DIGIT}{1,2}[\-/]{DIGIT}{2,4}".into()),
        ("NUM", r"{DIGIT}+|{DIGIT}*(?:[.:,\x{00AD}\x{066B}\x{066C}]{DIGIT}+)+".into()),
        ("NUMBER", r"[\-+]?(?:{NUM})".into()),
        (
            "SUBSUPNUM",
            r"[\x{207A}\x{207B}\x{208A}\x{208B}]?(?:[\x{2070}\x{00B9}\x{00B2}\x{00B3}\x{2074}-\x{2079}]+|[\x{2080}-\x{2089}]+)".into(),
        ),
        ("FRAC", r"(?:{DIGIT}{1,4}[\- \x{00A0}])?{DIGIT}{1,4}(?:\\?/|\x{2044}){DIGIT}{1,4}".into()),
        ("FRAC2", r"[\x{00BC}\x{00BD}\x{00BE}\x{2153}-\x{215E}]".into()),
        ("DOLSIGN", r"[A-Z]*\$|\#".into()),
        (
            "DOLSIGN2",
            r"[\x{00A2}\x{00A3}\x{00A4}\x{00A5}\x{0080}\x{20A0}\x{20AC}\x{060B}\x{0E3F}\x{20A4}\x{FFE0}\x{FFE1}\x{FFE5}\x{FFE6}]".into(),
        ),
        (
            "LETTER",
            r"{PLETTER}|{SPLET}|[\x{00AD}\x{0237}-\x{024F}\x{02C2}-\x{02C5}\x{02D2}-\x{02DF}\x{02E5}-\x{02FF}\x{0300}-\x{036F}\x{0370}-\x{037D}\x{0384}\x{0385}\x{03CF}\x{03F6}\x{03FC}-\x{03FF}\x{0483}-\x{0487}\x{04CF}\x{04F6}-\x{04FF}\x{0510}-\x{0525}\x{055A}-\x{055F}\x{0591}-\x{05BD}\x{05BF}\x{05C1}\x{05C2}\x{05C4}\x{05C5}\x{05C7}\x{0615}-\x{061A}\x{063B}-\x{063F}\x{064B}-\x{065E}\x{0670}\x{06D6}-\x{06EF}\x{06FA}-\x{06FF}\x{070F}\x{0711}\x{0730}-\x{074F}\x{0750}-\x{077F}\x{07A6}-\x{07B1}\x{07CA}-\x{07F5}\x{07FA}\x{0900}-\x{0903}\x{093C}\x{093E}-\x{094E}\x{0951}-\x{0955}\x{0962}-\x{0963}\x{0981}-\x{0983}\x{09BC}-\x{09C4}\x{09C7}\x{09C8}\x{09CB}-\x{09CD}\x{09D7}\x{09E2}\x{09E3}\x{0A01}-\x{0A03}\x{0A3C}\x{0A3E}-\x{0A4F}\x{0A81}-\x{0A83}\x{0ABC}-\x{0ACF}\x{0B82}\x{0BBE}-\x{0BC2}\x{0BC6}-\x{0BC8}\x{0BCA}-\x{0BCD}\x{0C01}-\x{0C03}\x{0C3E}-\x{0C56}\x{0D3E}-\x{0D44}\x{0D46}-\x{0D48}\x{0E30}-\x{0E3A}\x{0E47}-\x{0E4E}\x{0EB1}-\x{0EBC}\x{0EC8}-\x{0ECD}]".into(),
        ),
        ("WORD", r"(?:{LETTER})(?:{LETTER}|{DIGIT})*(?:[.!?](?:{LETTER})(?:{LETTER}|{DIGIT})*)*".into()),
        (
            "FILENAME_EXT",
            "bat|bmp|c|class|cgi|cpp|dll|doc|docx|exe|gif|gz|h|htm|html|jar|java|jpeg|jpg|mov|mp3|pdf|php|pl|png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip".into(),
        ),
        ("FILENAME", r"(?:{LETTER}|{DIGIT})+(?:[.](?:{LETTER}|{DIGIT})+)*(?:[.](?:{FILENAME_EXT}))".into()),
        ("APOS", r"['\x{0092}\x{2019}]|&apos;".into()),
        ("APOSETCETERA", r"{APOS}|[`\x{0091}\x{2018}\x{201B}]".into()),
        ("HYPHEN", r"[\-_\x{058A}\x{2010}\x{2011}]".into()),
        (
            "THING",
            r"(?:[dDoOlL](?:{APOSETCETERA})(?:{PLETTER}|{PDIGIT}))?(?:{PLETTER}|{PDIGIT})+(?:{HYPHEN}(?:[dDoOlL](?:{APOSETCETERA})(?:{PLETTER}|{PDIGIT}))?(?:{PLETTER}|{PDIGIT})+)*".into(),
        ),
        ("THINGA", r"[A-Z]+(?:(?:[+&]|{SPAMP})[A-Z]+)+".into()),
        ("THING3", r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}".into()),
        ("ACRO", r"[A-Za-z](?:\.[A-Za-z])*|(?:Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(?:U\.K|U\.S\.S\.R)".into()),
        ("ACRO2", r"[A-Za-z](?:\.[A-Za-z])+|(?:Canada|Sino|Korean|EU|Japan|non)-U\.S|U\.S\.-(?:U\.K|U\.S\.S\.R)".into()),
        ("HTHING", r"[A-Za-z0-9][A-Za-z0-9.,\x{00AD}]*(?:-(?:[A-Za-z0-9\x{00AD}]+|(?:{ACRO2})\.))+".into()),
        ("REDAUX", r"(?:{APOS})(?:[msdMSD]|re|ve|ll)".into()),
        ("SWORD", r"[A-Za-z\x{00AD}]*[A-MO-Za-mo-z]\x{00AD}*".into()),
        ("SREDAUX", r"n(?:{APOSETCETERA})t".into()),
        (
            "APOWORD",
            r"(?:{APOS})n(?:{APOS})?|[lLdDjJ](?:{APOS})|Dunkin(?:{APOS})|somethin(?:{APOS})|ol(?:{APOS})|(?:{APOS})em|[A-HJ-XZn](?:{APOSETCETERA}){PLETTER}{2}{PLETTER}*|(?:{APOS})[2-9]0s|(?:{APOS})till?|{PLETTER}{PLETTER}*[aeiouyAEIOUY](?:{APOSETCETERA})[aeiouA-Z]{PLETTER}*|(?:{APOS})cause|cont'd\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l|O(?:{APOSETCETERA})o".into(),
        ),
        ("APOWORD2", r"y(?:{APOS})".into()),
        ("FULLURL", r#"https?://[^ \t\n\x{000C}\r"<>|(){}]+[^ \t\n\x{000C}\r"<>|.!?(){},\-]"#.into()),
        (
            "LIKELYURL",
            r#"(?:(?:www\.(?:[^ \t\n\x{000C}\r"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})|(?:(?:[^ \t\n\x{000C}\r"`'<>|.!?(){}\x{2C}-\x{5F}$]+\.)+(?:com|net|org|edu)))(?:/[^ \t\n\x{000C}\r"<>|()]+[^ \t\n\x{000C}\r"<>|.!?(){},\-])?"#.into(),
        ),
        (
            "EMAIL",
            r#"(?:&lt;|<)?[a-zA-Z0-9][^ \t\n\x{000C}\r"<>|()\x{00A0}{}]*@(?:[^ \t\n\x{000C}\r"<>|(){}.\x{00A0}]+\.)*(?:[^ \t\n\x{000C}\r"<>|(){}.\x{00A0}]+)(?:&gt;|>)?"#.into(),
        ),
        ("TWITTER", r"@[a-zA-Z_][a-zA-Z_0-9]*|\#(?:{LETTER})+".into()),
        ("ABMONTH", "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec".into()),
        ("ABDAYS", "Mon|Tue|Tues|Wed|Thu|Thurs|Fri".into()),
        (
            "ABSTATE",
            "Ala|Ariz|[A]z|[A]rk|Calif|Colo|Conn|Ct|Dak|[D]el|Fla|Ga|[I]ll|Ind|Kans?|Ky|[L]a|[M]ass|Md|Mich|Minn|[M]iss|Mo|Mont|Neb|Nev|Okla|[O]re|[P]a|Penn|Tenn|[T]ex|Va|Vt|[W]ash|Wisc?|Wyo".into(),
        ),
        ("ABCOMP", "Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|Intl|Sys".into()),
        ("ABNUM", "tel|est|ext|sq".into()),
        ("ABPTIT", r"Jr|Sr|Bros|(?:Ed|Ph)\.D|Blvd|Rd|Esq".into()),
        (
            "ABBREV1",
            r"(?:{ABMONTH}|{ABDAYS}|{ABSTATE}|{ABCOMP}|{ABNUM}|{ABPTIT}|etc|al|seq|Bldg)\.".into(),
        ),
        (
            "ABTITLE",
            "Mr|Mrs|Ms|[M]iss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|Mt|Ft|Adj|Adv|Asst|Assoc|Ens|Insp|Mlle|Mme|Msgr|Sfc".into(),
        ),
        ("ABCOMP2", "Invt|Elec|Natl|M[ft]g|Dept".into()),
        ("ABBREV4", r"{ABTITLE}|vs|Alex|Wm|Jos|Cie|a\.k\.a|cf|TREAS|Ph|{ACRO}|{ABCOMP2}".into()),
        ("ABBREV2", r"(?:{ABBREV4})\.".into()),
        ("ACRONYM", r"(?:{ACRO})\.".into()),
        ("ABBREV3", r"(?:ca|figs?|prop|nos?|art|bldg|prop|pp|op)\.".into()),
        (
            "PHONE",
            r"(?:\([0-9]{2,3}\)[ \x{00A0}]?|(?:\+\+?)?(?:[0-9]{2,4}[\- \x{00A0}])?[0-9]{2,4}[\- \x{00A0}])[0-9]{3,4}[\- \x{00A0}]?[0-9]{3,5}|(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}".into(),
        ),
        ("HYPHENS", r"\-+".into()),
        (
            "LDOTS",
            r"\.{3,5}|(?:\.[ \x{00A0}]){2,4}\.|[\x{0085}\x{2026}]".into(),
        ),
        ("FNMARKS", r"@+|\#+|_+".into()),
        ("ASTS", r"\*+|(?:\\\*){1,3}".into()),
        ("INSENTP", r"[,;:\x{3001}]".into()),
        (
            "QUOTES",
            r"{APOS}|''|[`\x{2018}\x{2019}\x{201A}\x{201B}\x{201C}\x{201D}\x{0091}\x{0092}\x{0093}\x{0094}\x{201E}\x{201F}\x{2039}\x{203A}\x{00AB}\x{00BB}]{1,2}".into(),
        ),
        ("DBLQUOT", r#""|&quot;"#.into()),
        (
            "TBSPEC",
            r"-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|pro-|anti-|S(?:&|&amp;)P-500|S(?:&|&amp;)Ls|Cap(?:{APOS})n|c(?:{APOS})est".into(),
        ),
        ("TBSPEC2", r"(?:{APOS})[0-9][0-9]".into()),
        ("SMILEY", r"[<>]?[:;=][\-o*']?[()DPdpO\\{@|\[\]]".into()),
        (
            "ASIANSMILEY",
            r"[\^x=~<>]\.\[\^x=~<>\]|[\-\^x=~<>']_[\-\^x=~<>']|\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)|\([\^x=~<>']-[\^x=~<>'`]\)".into(),
        ),
        (
            "MISCSYMBOL",
            r"[+%&~\^|\\\x{00A6}\x{00A7}\x{00A8}\x{00A9}\x{00AC}\x{00AE}\x{00AF}\x{00B0}-\x{00B3}\x{00B4}-\x{00BA}\x{00D7}\x{00F7}\x{0387}\x{05BE}\x{05C0}\x{05C3}\x{05C6}\x{05F3}\x{05F4}\x{0600}-\x{0603}\x{0606}-\x{060A}\x{060C}\x{0614}\x{061B}\x{061E}\x{066A}\x{066D}\x{0703}-\x{070D}\x{07F6}\x{07F7}\x{07F8}\x{0964}\x{0965}\x{0E4F}\x{1FBD}\x{2016}\x{2017}\x{2020}-\x{2023}\x{2030}-\x{2038}\x{203B}\x{203E}-\x{2042}\x{2044}\x{207A}-\x{207F}\x{208A}-\x{208E}\x{2100}-\x{214F}\x{2190}-\x{21FF}\x{2200}-\x{2BFF}\x{3012}\x{30FB}\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF20}\x{FF3B}-\x{FF40}\x{FF5B}-\x{FF65}]".into(),
        ),
    ];
    raw
}

/// Replaces `{NAME}` references to earlier macros by their (grouped)
/// expansion. Repetition counts such as `{1,2}` are left alone.
fn expand(pattern: &str, defs: &HashMap<&'static str, String>) -> String {
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let name_end = after[1..]
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .map(|i| i + 1);
        let escaped = before.ends_with('\\') && !before.ends_with("\\\\");
        match name_end {
            Some(end)
                if !escaped
                    && end > 1
                    && after[end..].starts_with('}')
                    && after[1..].starts_with(|c: char| c.is_ascii_uppercase()) =>
            {
                let name = &after[1..end];
                match defs.get(name) {
                    Some(body) => {
                        out.push_str("(?:");
                        out.push_str(body);
                        out.push(')');
                    }
                    None => out.push_str(&after[..=end]),
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// JFlex `%caseless`: ASCII letters outside character classes match either
/// case. Escapes (`\p{..}`, `\x{..}`, `\.`) and classes are left as written.
pub(crate) fn caseless(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() * 3);
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push(c);
            i += 1;
            if let Some(&n) = chars.get(i) {
                out.push(n);
                i += 1;
                if matches!(n, 'p' | 'P' | 'x') && chars.get(i) == Some(&'{') {
                    while let Some(&m) = chars.get(i) {
                        out.push(m);
                        i += 1;
                        if m == '}' {
                            break;
                        }
                    }
                } else if n == 'x' {
                    // \xHH
                    for _ in 0..2 {
                        if let Some(&m) = chars.get(i) {
                            out.push(m);
                            i += 1;
                        }
                    }
                }
            }
            continue;
        }
        if c == '[' {
            depth += 1;
            out.push(c);
            // A leading ']' or '^]' inside a class is literal in most
            // dialects; our patterns never use that, so nothing special.
            i += 1;
            continue;
        }
        if c == ']' && depth > 0 {
            depth -= 1;
            out.push(c);
            i += 1;
            continue;
        }
        if depth == 0 && c.is_ascii_alphabetic() {
            // Don't touch the `?:` group syntax (no letters there anyway).
            out.push('[');
            out.push(c.to_ascii_lowercase());
            out.push(c.to_ascii_uppercase());
            out.push(']');
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

/// The rules, in specification order, fully expanded and made caseless.
pub(crate) fn rules() -> Vec<Rule> {
    let mut defs: HashMap<&'static str, String> = HashMap::new();
    for (name, body) in macros() {
        let expanded = expand(&body, &defs);
        defs.insert(name, expanded);
    }
    let m = |p: &str| caseless(&expand(p, &defs));
    let r = |p: &str, a: Action| Rule {
        pattern: m(p),
        trail: None,
        action: a,
    };
    let t = |p: &str, tr: &str, a: Action| Rule {
        pattern: m(p),
        trail: Some(m(tr)),
        action: a,
    };
    use Action::*;
    const ACRONYM_FOLLOW: &str = r"(?:{SPACENLS})(?:[A]bout|[A]ccording|[A]dditionally|[A]fter|[A]n|[A]|[A]s|[A]t|[B]ut|[E]arlier|[H]e|[H]er|[H]ere|[H]owever|[I]f|[I]n|[I]t|[L]ast|[M]any|[M]ore|[M]r\.|[M]s\.|[N]ow|[O]nce|[O]ne|[O]ther|[O]ur|[S]he|[S]ince|[S]o|[S]ome|[S]uch|[T]hat|[T]he|[T]heir|[T]hen|[T]here|[T]hese|[T]hey|[T]his|[W]e|[W]hen|[W]hile|[W]hat|[Y]et|[Y]ou|{SGML})(?:{SPACENL})";
    vec![
        r(r"c[+][+]", Text),
        r(r"(?:c|f)\#", Text),
        r("cannot", Prefix(3)),
        r("'twas", Prefix(2)),
        r("'tis", Prefix(2)),
        r("gonna|gotta|lemme|gimme|wanna", Prefix(3)),
        r("{SGML}", SpaceToNbsp),
        r("{SPMDASH}", MDash),
        r("{SPAMP}", NormAmp),
        r("{SPPUNC}", Text),
        t("{WORD}", "{REDAUX}", SoftHyphen),
        t("{SWORD}", "{SREDAUX}", SoftHyphen),
        r("{WORD}", SoftHyphen),
        r("{APOWORD}", Text),
        t("{APOWORD2}", "{PLETTER}", Text),
        r("{FULLURL}", Text),
        r("{LIKELYURL}", Text),
        r("{EMAIL}", Text),
        r("{TWITTER}", Text),
        t("{REDAUX}", "[^A-Za-z]", Quotes(false)),
        t("{SREDAUX}", "[^A-Za-z]", Quotes(false)),
        r("{DATE}", Text),
        r("{NUMBER}", SoftHyphen),
        r("{SUBSUPNUM}", Text),
        r("{FRAC}", SpaceToNbsp),
        r("{FRAC2}", Fraction),
        r("{TBSPEC}", NormAmp),
        r("{THING3}", Text),
        r("{DOLSIGN}", Text),
        r("{DOLSIGN2}", Currency),
        t("{ACRONYM}", ACRONYM_FOLLOW, Acronym),
        t("{ABBREV3}", "(?:{SPACENL})?{PDIGIT}", StripSpace),
        t(r"(?:pt[eyEY]|co)\.", "{SPACE}(?:ltd|lim)", Text),
        t("{ABBREV1}", "{SENTEND}", ReLexLast),
        t("{ABBREV1}", "{ANY}{ANY}", Text),
        r("{ABBREV1}", ReLexLast),
        r("{ABBREV2}", Text),
        t("{ABBREV4}", "{SPACE}", Text),
        t("{ACRO}", "{SPACENL}", Text),
        t("{TBSPEC2}", "{SPACENL}", Text),
        t("{FILENAME}", "{SPACENL}|[.?!,]", Text),
        t(r"{WORD}\.", "{INSENTP}", SoftHyphen),
        r("{PHONE}", Phone),
        t("{DBLQUOT}", "[A-Za-z0-9$]", Quotes(true)),
        r("{DBLQUOT}", Quotes(false)),
        r(r"\x{7F}", Skip),
        r("<|&lt;", Fixed("<")),
        r(">|&gt;", Fixed(">")),
        t("{SMILEY}", "[^A-Za-z0-9]", Parens),
        r("{ASIANSMILEY}", Parens),
        r(r"\{", Fixed("-LCB-")),
        r(r"\}", Fixed("-RCB-")),
        r(r"\[", Fixed("-LSB-")),
        r(r"\]", Fixed("-RSB-")),
        r(r"\(", Fixed("-LRB-")),
        r(r"\)", Fixed("-RRB-")),
        r("{HYPHENS}", Hyphens),
        r("{LDOTS}", Ellipsis),
        r("{FNMARKS}", Text),
        r("{ASTS}", Text),
        r("{INSENTP}", Text),
        r("[?!]+", Text),
        r(
            r"[.\x{00A1}\x{00BF}\x{037E}\x{0589}\x{061F}\x{06D4}\x{0700}-\x{0702}\x{07FA}\x{3002}]",
            Text,
        ),
        r("=", Text),
        r("/", Text),
        t(r"{HTHING}\.", "{INSENTP}", SoftHyphen),
        r("{HTHING}", SoftHyphen),
        t(r"{THING}\.", "{INSENTP}", Text),
        r("{THING}", Text),
        t(r"{THINGA}\.", "{INSENTP}", NormAmp),
        r("{THINGA}", NormAmp),
        t("'", r"[A-Za-z][^ \t\n\r\x{00A0}]", Quotes(true)),
        r("{REDAUX}", Quotes(false)),
        r("{SREDAUX}", Quotes(false)),
        r("{QUOTES}", Quotes(false)),
        r("<<|>>", Text),
        r("{MISCSYMBOL}", Text),
        r(r"\x{0}|{SPACES}|[\x{200B}\x{200E}\x{200F}\x{FEFF}]", Skip),
        r("{NEWLINE}", Newline),
        r("&nbsp;", Skip),
        r(r"[^\n]", Skip),
    ]
}
