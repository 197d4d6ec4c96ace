//! Reads values aloud as a sequence of *segment prompts*: numbers, digits, money,
//! percentages, dates and times, in Mandarin and English.
//!
//! A reading is a list of segment ids (`zh_5`, `zh_wan`, `en_twenty`, …); each
//! segment is a short recording in the catalogue (`flows/segments.toml`), so a live
//! call plays them back to back and a transcript shows their text. Pure functions:
//! no I/O, no allocation beyond the result.
//!
//! Mandarin follows the spoken conventions of Chinese call centres: 零 once for any
//! run of zeros inside a number (一万零一, 一亿零一万), 两 when a 2 opens the number before 百/千/万/亿
//! (两千二百二十二, 两万) but 二 in the tens and units (二十二), no leading 一 before
//! 十 at the start (十五, 十万) but 一十 after a 零 (一万零一十), decimals digit by
//! digit after 点 keeping the digits as written (十点五零), money in 元/角/分 with
//! 零 for a missing 角 (十元零五分) and 整 for whole amounts.

mod segments;

pub use segments::{segment_text, SEGMENTS};

/// What kind of value to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    Digits,
    /// Digits read as a telephone or account number: 幺 for 1 in Mandarin.
    Phone,
    Money,
    Percent,
    Date,
    Time,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "number" => Kind::Number,
            "digits" => Kind::Digits,
            "phone" => Kind::Phone,
            "money" => Kind::Money,
            "percent" => Kind::Percent,
            "date" => Kind::Date,
            "time" => Kind::Time,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
}

/// Why a value cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reading: the segments to play, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub lang: Lang,
    pub segments: Vec<&'static str>,
}

impl Reading {
    /// The text the segments speak (Mandarin without spaces, English with).
    pub fn text(&self) -> String {
        let parts: Vec<&str> = self.segments.iter().map(|s| segment_text(s).unwrap_or("?")).collect();
        match self.lang {
            Lang::Zh => parts.concat(),
            Lang::En => parts.join(" "),
        }
    }
}

/// Reads `value` (as the VM prints it: `-12.50`, `600000`, `2026-11-23`, `09:30`).
pub fn read(kind: Kind, value: &str, lang: Lang) -> Result<Reading, Unreadable> {
    let mut out = Vec::new();
    match (kind, lang) {
        (Kind::Number, _) => number(value, lang, &mut out)?,
        (Kind::Digits, _) => digits(value, lang, &mut out)?,
        (Kind::Phone, _) => {
            digits(value, lang, &mut out)?;
            // 幺 for 1, so 1 and 7 (yī, qī) are not confused over the phone.
            for s in out.iter_mut().filter(|s| **s == "zh_1") {
                *s = "zh_yao";
            }
        }
        (Kind::Money, Lang::Zh) => money_zh(value, &mut out)?,
        (Kind::Money, Lang::En) => money_en(value, &mut out)?,
        (Kind::Percent, Lang::Zh) => {
            let (neg, body) = sign(value);
            if neg {
                out.push("zh_fu");
            }
            out.push("zh_baifenzhi");
            number(body, lang, &mut out)?;
        }
        (Kind::Percent, Lang::En) => {
            number(value, lang, &mut out)?;
            out.push("en_percent");
        }
        (Kind::Date, _) => date(value, lang, &mut out)?,
        (Kind::Time, _) => time(value, lang, &mut out)?,
    }
    Ok(Reading { lang, segments: out })
}

fn bad(what: &str, value: &str) -> Unreadable {
    Unreadable(format!("`{value}` is not a {what}"))
}

fn sign(v: &str) -> (bool, &str) {
    match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    }
}

/// Splits `12.50` into ("12", "50"), checking both are digits.
fn split_decimal(v: &str) -> Option<(&str, &str)> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let ok = !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit());
    (ok && !(v.contains('.') && frac.is_empty())).then_some((int, frac))
}

const ZH_DIGIT: [&str; 10] = ["zh_0", "zh_1", "zh_2", "zh_3", "zh_4", "zh_5", "zh_6", "zh_7", "zh_8", "zh_9"];
const EN_SMALL: [&str; 20] = [
    "en_0", "en_1", "en_2", "en_3", "en_4", "en_5", "en_6", "en_7", "en_8", "en_9", "en_10", "en_11", "en_12", "en_13",
    "en_14", "en_15", "en_16", "en_17", "en_18", "en_19",
];
const EN_TENS: [&str; 10] = ["", "", "en_20", "en_30", "en_40", "en_50", "en_60", "en_70", "en_80", "en_90"];

fn digit_seg(d: u8, lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => ZH_DIGIT[d as usize],
        Lang::En => EN_SMALL[d as usize],
    }
}

fn number(v: &str, lang: Lang, out: &mut Vec<&'static str>) -> Result<(), Unreadable> {
    let (neg, body) = sign(v);
    let (int, frac) = split_decimal(body).ok_or_else(|| bad("number", v))?;
    let int = int.trim_start_matches('0');
    if int.len() > 16 {
        return Err(Unreadable(format!("`{v}` is too large to read")));
    }
    let n: u64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| bad("number", v))? };
    if neg && (n != 0 || frac.bytes().any(|b| b != b'0')) {
        out.push(if lang == Lang::Zh { "zh_fu" } else { "en_minus" });
    }
    match lang {
        Lang::Zh => integer_zh(n, out),
        Lang::En => integer_en(n, out),
    }
    if !frac.is_empty() {
        out.push(if lang == Lang::Zh { "zh_dian" } else { "en_point" });
        for b in frac.bytes() {
            out.push(digit_seg(b - b'0', lang));
        }
    }
    Ok(())
}

/// A whole number in Mandarin.
pub fn integer_zh(n: u64, out: &mut Vec<&'static str>) {
    if n == 0 {
        out.push("zh_0");
        return;
    }
    // Groups of four digits: 个, 万, 亿, 万亿.
    let mut groups = Vec::new();
    let mut m = n;
    while m > 0 {
        groups.push((m % 10_000) as u16);
        m /= 10_000;
    }
    let units: [&[&str]; 4] = [&[], &["zh_wan"], &["zh_yi"], &["zh_wan", "zh_yi"]];
    let mut pending_zero = false;
    let mut started = false;
    for (i, &g) in groups.iter().enumerate().rev() {
        if g == 0 {
            if started {
                pending_zero = true;
            }
            continue;
        }
        if started && (pending_zero || g < 1000) {
            out.push("zh_0");
        }
        group_zh(g, !started, i > 0, out);
        out.extend_from_slice(units[i]);
        started = true;
        pending_zero = false;
    }
}

/// One group of up to four digits. `leading`: first group of the number (no 一 before
/// 十); `before_unit`: followed by 万/亿 (a lone 2 reads 两).
fn group_zh(g: u16, leading: bool, before_unit: bool, out: &mut Vec<&'static str>) {
    let ds = [(g / 1000) as u8, (g / 100 % 10) as u8, (g / 10 % 10) as u8, (g % 10) as u8];
    let places = ["zh_qian", "zh_bai", "zh_shi", ""];
    let first = ds.iter().position(|&d| d != 0).unwrap_or(3);
    let mut zero = false;
    for (p, &d) in ds.iter().enumerate().skip(first) {
        if d == 0 {
            zero = true;
            continue;
        }
        if zero {
            out.push("zh_0");
            zero = false;
        }
        let is_first = p == first;
        let seg = match (p, d) {
            // 十五, 十万: no 一 before 十 at the very start of the number.
            (2, 1) if is_first && leading => None,
            // 两千, 两百, 两万, 两亿 when the 2 opens the number; 二 elsewhere
            // (一千二百, 一万二千, 二十二).
            (0 | 1, 2) if is_first && leading => Some("zh_liang"),
            (3, 2) if is_first && leading && before_unit => Some("zh_liang"),
            _ => Some(ZH_DIGIT[d as usize]),
        };
        out.extend(seg);
        if !places[p].is_empty() {
            out.push(places[p]);
        }
    }
}

/// A whole number in English (short scale).
pub fn integer_en(n: u64, out: &mut Vec<&'static str>) {
    if n == 0 {
        out.push("en_0");
        return;
    }
    let scales = ["", "en_thousand", "en_million", "en_billion", "en_trillion", "en_quadrillion"];
    let mut groups = Vec::new();
    let mut m = n;
    while m > 0 {
        groups.push((m % 1000) as u16);
        m /= 1000;
    }
    for (i, &g) in groups.iter().enumerate().rev() {
        if g == 0 {
            continue;
        }
        below_thousand_en(g, out);
        if i > 0 {
            out.push(scales[i]);
        }
    }
}

fn below_thousand_en(g: u16, out: &mut Vec<&'static str>) {
    let (h, rest) = (g / 100, g % 100);
    if h > 0 {
        out.push(EN_SMALL[h as usize]);
        out.push("en_hundred");
    }
    if rest >= 20 {
        out.push(EN_TENS[(rest / 10) as usize]);
        if rest % 10 > 0 {
            out.push(EN_SMALL[(rest % 10) as usize]);
        }
    } else if rest > 0 {
        out.push(EN_SMALL[rest as usize]);
    }
}

fn digits(v: &str, lang: Lang, out: &mut Vec<&'static str>) -> Result<(), Unreadable> {
    if v.is_empty() {
        return Err(bad("digit string", v));
    }
    for c in v.chars() {
        match c {
            '0'..='9' => out.push(digit_seg(c as u8 - b'0', lang)),
            '.' => out.push(if lang == Lang::Zh { "zh_dian" } else { "en_point" }),
            '-' if out.is_empty() => out.push(if lang == Lang::Zh { "zh_fu" } else { "en_minus" }),
            _ => return Err(bad("digit string", v)),
        }
    }
    Ok(())
}

/// Rounds a decimal string to whole units and hundredths: ("10", 5, 2) for 10.52.
fn money_parts(v: &str) -> Option<(bool, u64, u8, u8)> {
    let (neg, body) = sign(v);
    let (int, frac) = split_decimal(body)?;
    let int = int.trim_start_matches('0');
    if int.len() > 16 {
        return None;
    }
    let mut yuan: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let f: Vec<u8> = frac.bytes().map(|b| b - b'0').collect();
    let mut cents = f.first().copied().unwrap_or(0) as u32 * 10 + f.get(1).copied().unwrap_or(0) as u32;
    // Half away from zero on the third decimal.
    if f.get(2).copied().unwrap_or(0) >= 5 {
        cents += 1;
        if cents == 100 {
            cents = 0;
            yuan += 1;
        }
    }
    Some((neg && (yuan > 0 || cents > 0), yuan, (cents / 10) as u8, (cents % 10) as u8))
}

fn money_zh(v: &str, out: &mut Vec<&'static str>) -> Result<(), Unreadable> {
    let (neg, yuan, jiao, fen) = money_parts(v).ok_or_else(|| bad("sum of money", v))?;
    if neg {
        out.push("zh_fu");
    }
    if yuan == 2 {
        out.push("zh_liang"); // 两元
        out.push("zh_yuan");
    } else if yuan > 0 || (jiao == 0 && fen == 0) {
        integer_zh(yuan, out);
        out.push("zh_yuan");
    }
    match (jiao, fen) {
        (0, 0) => out.push("zh_zheng"),
        (j, 0) => {
            out.push(ZH_DIGIT[j as usize]);
            out.push("zh_jiao");
        }
        (0, f) => {
            if yuan > 0 {
                out.push("zh_0");
            }
            out.push(ZH_DIGIT[f as usize]);
            out.push("zh_fen");
        }
        (j, f) => {
            out.push(ZH_DIGIT[j as usize]);
            out.push("zh_jiao");
            out.push(ZH_DIGIT[f as usize]);
            out.push("zh_fen");
        }
    }
    Ok(())
}

fn money_en(v: &str, out: &mut Vec<&'static str>) -> Result<(), Unreadable> {
    let (neg, yuan, jiao, fen) = money_parts(v).ok_or_else(|| bad("sum of money", v))?;
    let cents = jiao as u64 * 10 + fen as u64;
    if neg {
        out.push("en_minus");
    }
    if yuan > 0 || cents == 0 {
        integer_en(yuan, out);
        out.push("en_yuan");
    }
    if cents > 0 {
        if yuan > 0 {
            out.push("en_and");
        }
        integer_en(cents, out);
        out.push("en_fen");
    }
    Ok(())
}

const EN_MONTHS: [&str; 12] = [
    "en_january", "en_february", "en_march", "en_april", "en_may", "en_june", "en_july", "en_august",
    "en_september", "en_october", "en_november", "en_december",
];
const EN_ORDINAL: [&str; 20] = [
    "", "en_1st", "en_2nd", "en_3rd", "en_4th", "en_5th", "en_6th", "en_7th", "en_8th", "en_9th", "en_10th",
    "en_11th", "en_12th", "en_13th", "en_14th", "en_15th", "en_16th", "en_17th", "en_18th", "en_19th",
];

fn date(v: &str, lang: Lang, out: &mut Vec<&'static str>) -> Result<(), Unreadable> {
    // `2026-11-23`, or as a caller types it, `20261123`.
    let parts: Vec<&str> = if v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()) { vec![&v[..4], &v[4..6], &v[6..]] } else { v.split('-').collect() };
    let [y, m, d] = parts[..] else { return Err(bad("date (YYYY-MM-DD or YYYYMMDD)", v)) };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return Err(bad("date (YYYY-MM-DD or YYYYMMDD)", v));
    };
    // A day the calendar has (no 31 February, 29 February only in leap years).
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in = |m: u32| match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&m) || !(1000..=9999).contains(&y) || d < 1 || d > days_in(m) {
        return Err(bad("date (YYYY-MM-DD or YYYYMMDD)", v));
    }
    match lang {
        Lang::Zh => {
            for b in y.to_string().bytes() {
                out.push(ZH_DIGIT[(b - b'0') as usize]);
            }
            out.push("zh_nian");
            group_zh(m as u16, true, false, out);
            out.push("zh_yue");
            group_zh(d as u16, true, false, out);
            out.push("zh_ri");
        }
        Lang::En => {
            out.push(EN_MONTHS[m as usize - 1]);
            match d {
                1..=19 => out.push(EN_ORDINAL[d as usize]),
                20 => out.push("en_20th"),
                30 => out.push("en_30th"),
                _ => {
                    out.push(EN_TENS[(d / 10) as usize]);
                    out.push(EN_ORDINAL[(d % 10) as usize]);
                }
            }
            // Years read in pairs: twenty twenty-six; 2000–2009 as a number.
            if (2000..2010).contains(&y) {
                integer_en(y as u64, out);
            } else {
                integer_en((y / 100) as u64, out);
                match y % 100 {
                    0 => out.push("en_hundred"),
                    r @ 1..=9 => {
                        out.push("en_oh");
                        out.push(EN_SMALL[r as usize]);
                    }
                    r => integer_en(r as u64, out),
                }
            }
        }
    }
    Ok(())
}

fn time(v: &str, lang: Lang, out: &mut Vec<&'static str>) -> Result<(), Unreadable> {
    let (h, m) = v.split_once(':').ok_or_else(|| bad("time (HH:MM)", v))?;
    let (Ok(h), Ok(m)) = (h.parse::<u32>(), m.get(..2).unwrap_or(m).parse::<u32>()) else {
        return Err(bad("time (HH:MM)", v));
    };
    if h > 23 || m > 59 {
        return Err(bad("time (HH:MM)", v));
    }
    match lang {
        Lang::Zh => {
            if h == 2 {
                out.push("zh_liang"); // 两点
            } else {
                integer_zh(h as u64, out);
            }
            out.push("zh_dian");
            match m {
                0 => out.push("zh_zheng"),
                1..=9 => {
                    out.push("zh_0");
                    out.push(ZH_DIGIT[m as usize]);
                    out.push("zh_fen");
                }
                _ => {
                    group_zh(m as u16, true, false, out);
                    out.push("zh_fen");
                }
            }
        }
        Lang::En => {
            let h12 = match h % 12 {
                0 => 12,
                x => x,
            };
            integer_en(h12 as u64, out);
            match m {
                0 => out.push("en_oclock"),
                1..=9 => {
                    out.push("en_oh");
                    out.push(EN_SMALL[m as usize]);
                }
                _ => integer_en(m as u64, out),
            }
            out.push(if h < 12 { "en_am" } else { "en_pm" });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
