//! The key two usernames collide on: their Unicode TR39 confusable
//! skeleton, so `Alice`, `AIice` (capital i), `Ａｌｉｃｅ` (fullwidth) and
//! `Аlice` (Cyrillic А) are one name. The skeleton is only ever compared,
//! never shown. Whether a name is acceptable at all (NFC, invisible
//! characters, mixed scripts) is the API's input rule; the store only keeps
//! names unique among online peers.

/// The skeleton of `name` (unicode-security's UTS #39 tables), with runs
/// of whitespace squeezed to one space and none at either end: `Alice ` and
/// `Al  ice` look like `Alice` and `Al ice` in any list.
pub fn name_key(name: &str) -> String {
    let squeezed = name.split_whitespace().collect::<Vec<_>>().join(" ");
    unicode_security::skeleton(&squeezed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookalikes_share_a_key() {
        let alice = name_key("Alice");
        for lookalike in [
            "\u{410}lice",
            "\u{ff21}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}",
            "AIice",
            "A1ice",
        ] {
            assert_eq!(name_key(lookalike), alice, "{lookalike}");
        }
        assert_eq!(name_key(" Alice  "), alice, "whitespace is hard to see");
        assert_eq!(name_key("Al  ice"), name_key("Al\u{3000}ice"));
        assert_ne!(name_key("Al ice"), alice);
        assert_ne!(name_key("Bob"), alice);
        assert_ne!(name_key("alice"), alice, "case is visible");
    }
}
