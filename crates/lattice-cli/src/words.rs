//! Splitting a shell line into words, the way a POSIX shell would for the simple cases:
//! whitespace separates words, `'...'` is literal, `"..."` allows `\"` and `\\`, and a backslash
//! outside quotes escapes the next character. No variables, globs or pipes.

/// Splits `line` into words. Errors on an unterminated quote or a trailing backslash.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err("trailing backslash".into()),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn plain_and_quoted_words() {
        assert_eq!(split("  put a 1 ").unwrap(), ["put", "a", "1"]);
        assert_eq!(split(r#"put "a key" 'it''s'"#).unwrap(), ["put", "a key", "its"]);
        assert_eq!(split(r#"put k "say \"hi\" \n""#).unwrap(), ["put", "k", r#"say "hi" \n"#]);
        assert_eq!(split(r"put a\ b ''").unwrap(), ["put", "a b", ""]);
        assert_eq!(split("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        assert!(split("put 'a").is_err());
        assert!(split("put \"a").is_err());
        assert!(split("put a\\").is_err());
    }
}
