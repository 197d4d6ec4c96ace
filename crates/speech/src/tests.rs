use super::*;

fn zh(kind: Kind, v: &str) -> String {
    read(kind, v, Lang::Zh).unwrap().text()
}

fn en(kind: Kind, v: &str) -> String {
    read(kind, v, Lang::En).unwrap().text()
}

#[test]
fn mandarin_numbers() {
    let cases = [
        ("0", "零"),
        ("2", "二"),
        ("10", "十"),
        ("15", "十五"),
        ("20", "二十"),
        ("22", "二十二"),
        ("100", "一百"),
        ("101", "一百零一"),
        ("110", "一百一十"),
        ("200", "两百"),
        ("1001", "一千零一"),
        ("1010", "一千零一十"),
        ("2222", "两千二百二十二"),
        ("10000", "一万"),
        ("10001", "一万零一"),
        ("10010", "一万零一十"),
        ("10100", "一万零一百"),
        ("10200", "一万零二百"),
        ("22000", "两万二千"),
        ("11000", "一万一千"),
        ("20000", "两万"),
        ("100000", "十万"),
        ("100010", "十万零一十"),
        ("120000", "十二万"),
        ("220000", "二十二万"),
        ("1000000", "一百万"),
        ("10000000", "一千万"),
        ("100000000", "一亿"),
        ("100000001", "一亿零一"),
        ("100010000", "一亿零一万"),
        ("110000000", "一亿一千万"),
        ("200000000", "两亿"),
        ("1000000000000", "一万亿"),
        ("1002003004", "十亿零二百万三千零四"),
        ("12345678", "一千二百三十四万五千六百七十八"),
    ];
    for (v, want) in cases {
        assert_eq!(zh(Kind::Number, v), want, "{v}");
    }
}

#[test]
fn mandarin_decimals_negatives_and_digits() {
    assert_eq!(zh(Kind::Number, "3.14"), "三点一四");
    assert_eq!(zh(Kind::Number, "10.50"), "十点五零", "digits after the point are read as written");
    assert_eq!(zh(Kind::Number, "0.05"), "零点零五");
    assert_eq!(zh(Kind::Number, "-1.25"), "负一点二五");
    assert_eq!(zh(Kind::Number, "-0"), "零");
    assert_eq!(zh(Kind::Digits, "600000"), "六零零零零零");
    assert_eq!(zh(Kind::Digits, "000001"), "零零零零零一");
    assert_eq!(zh(Kind::Percent, "1.25"), "百分之一点二五");
    assert_eq!(zh(Kind::Percent, "-0.5"), "负百分之零点五");
}

#[test]
fn mandarin_money() {
    let cases = [
        ("10.52", "十元五角二分"),
        ("10.50", "十元五角"),
        ("10.5", "十元五角"),
        ("10.05", "十元零五分"),
        ("10", "十元整"),
        ("10.00", "十元整"),
        ("0.52", "五角二分"),
        ("0.05", "五分"),
        ("0", "零元整"),
        ("2", "两元整"),
        ("12345.67", "一万二千三百四十五元六角七分"),
        ("10.555", "十元五角六分"),
        ("9.999", "十元整"),
        ("-3.20", "负三元二角"),
    ];
    for (v, want) in cases {
        assert_eq!(zh(Kind::Money, v), want, "{v}");
    }
}

#[test]
fn mandarin_dates_and_times() {
    assert_eq!(zh(Kind::Date, "2026-11-23"), "二零二六年十一月二十三日");
    assert_eq!(zh(Kind::Date, "2026-01-01"), "二零二六年一月一日");
    assert_eq!(zh(Kind::Time, "09:30"), "九点三十分");
    assert_eq!(zh(Kind::Time, "14:05"), "十四点零五分");
    assert_eq!(zh(Kind::Time, "10:00"), "十点整");
    assert_eq!(zh(Kind::Time, "02:10"), "两点十分");
}

#[test]
fn english() {
    assert_eq!(en(Kind::Number, "0"), "zero");
    assert_eq!(en(Kind::Number, "15"), "fifteen");
    assert_eq!(en(Kind::Number, "1234567"), "one million two hundred thirty four thousand five hundred sixty seven");
    assert_eq!(en(Kind::Number, "1000001"), "one million one");
    assert_eq!(en(Kind::Number, "-10.50"), "minus ten point five zero");
    assert_eq!(en(Kind::Digits, "600000"), "six zero zero zero zero zero");
    assert_eq!(en(Kind::Money, "10.52"), "ten yuan and fifty two fen");
    assert_eq!(en(Kind::Money, "0.05"), "five fen");
    assert_eq!(en(Kind::Money, "100"), "one hundred yuan");
    assert_eq!(en(Kind::Percent, "-1.25"), "minus one point two five percent");
    assert_eq!(en(Kind::Date, "2026-11-23"), "November twenty third twenty twenty six");
    assert_eq!(en(Kind::Date, "2005-03-01"), "March first two thousand five");
    assert_eq!(en(Kind::Time, "09:30"), "nine thirty a.m.");
    assert_eq!(en(Kind::Time, "14:05"), "two oh five p.m.");
    assert_eq!(en(Kind::Time, "00:00"), "twelve o'clock a.m.");
}

#[test]
fn unreadable_values_are_errors() {
    for v in ["", "abc", "1.", ".5", "1e5", "--1", "12345678901234567890"] {
        assert!(read(Kind::Number, v, Lang::Zh).is_err(), "{v:?}");
    }
    assert!(read(Kind::Date, "2026-13-01", Lang::Zh).is_err());
    assert!(read(Kind::Time, "25:00", Lang::En).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    #[test]
    fn every_number_up_to_a_trillion_uses_only_catalogue_segments(n in 0u64..=1_000_000_000_000u64, frac in 0u32..1000) {
        for v in [n.to_string(), format!("{n}.{frac:03}")] {
            for lang in [Lang::Zh, Lang::En] {
                for kind in [Kind::Number, Kind::Money, Kind::Percent, Kind::Digits] {
                    let r = read(kind, &v, lang).unwrap();
                    for s in &r.segments {
                        proptest::prop_assert!(segment_text(s).is_some(), "{s} from {v}");
                    }
                }
            }
            let zh = read(Kind::Number, &n.to_string(), Lang::Zh).unwrap().text();
            proptest::prop_assert!(!zh.contains("零零"), "{n}: {zh}");
            proptest::prop_assert!(n == 0 || !zh.ends_with('零'), "{n}: {zh}");
            proptest::prop_assert!(!zh.starts_with("一十"), "{n}: {zh}");
        }
    }
}

#[test]
fn dates_the_calendar_does_not_have_are_not_read() {
    for bad in ["2026-02-29", "2026-02-31", "2026-04-31", "2100-02-29"] {
        assert!(read(Kind::Date, bad, Lang::Zh).is_err(), "{bad}");
    }
    for good in ["2024-02-29", "2000-02-29", "2026-12-31", "2026-04-30"] {
        assert!(read(Kind::Date, good, Lang::Zh).is_ok(), "{good}");
    }
}

#[test]
fn phone_and_account_numbers_read_one_as_yao() {
    assert_eq!(zh(Kind::Phone, "13800138000"), "幺三八零零幺三八零零零");
    assert_eq!(zh(Kind::Digits, "13800138000"), "一三八零零一三八零零零", "digits keep 一");
    assert_eq!(en(Kind::Phone, "110"), "one one zero");
}
