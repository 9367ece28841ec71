//! `aws.allowedRoles`: glob patterns for the roles a job may chain into,
//! checked before any STS call so a refused role costs nothing and shows up
//! as its own exit code.
//!
//! `*` matches any run of characters (slashes included: role paths), `?` one
//! character; everything else is literal. An empty list allows every role.

pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Classic two-pointer glob match with backtracking to the last `*`:
    // linear in practice, and no recursion on user input.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The first role that no pattern allows, if any.
pub fn first_refused<'a>(roles: &'a [String], patterns: &[String]) -> Option<&'a str> {
    if patterns.is_empty() {
        return None;
    }
    roles
        .iter()
        .find(|role| !patterns.iter().any(|p| matches(p.trim(), role)))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let cases = [
            (
                "arn:aws:iam::1:role/arc-runner-*",
                "arn:aws:iam::1:role/arc-runner-ecr",
                true,
            ),
            (
                "arn:aws:iam::1:role/arc-runner-*",
                "arn:aws:iam::1:role/arc-runner-",
                true,
            ),
            (
                "arn:aws:iam::1:role/arc-runner-*",
                "arn:aws:iam::2:role/arc-runner-ecr",
                false,
            ),
            (
                "arn:aws:iam::*:role/deploy",
                "arn:aws:iam::333:role/deploy",
                true,
            ),
            (
                "arn:aws:iam::*:role/deploy",
                "arn:aws:iam::333:role/deploy-admin",
                false,
            ),
            (
                "arn:aws:iam::1:role/*",
                "arn:aws:iam::1:role/path/to/x",
                true,
            ),
            ("arn:aws:iam::1:role/a?c", "arn:aws:iam::1:role/abc", true),
            ("arn:aws:iam::1:role/a?c", "arn:aws:iam::1:role/ac", false),
            ("*", "anything", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(matches(pattern, text), want, "{pattern} vs {text}");
        }
    }

    #[test]
    fn the_first_refused_role_is_named() {
        let patterns = vec!["arn:aws:iam::1:role/ok-*".to_string()];
        let roles = vec![
            "arn:aws:iam::1:role/ok-a".to_string(),
            "arn:aws:iam::1:role/no".to_string(),
        ];
        assert_eq!(
            first_refused(&roles, &patterns),
            Some("arn:aws:iam::1:role/no")
        );
        assert_eq!(first_refused(&roles[..1], &patterns), None);
        assert_eq!(first_refused(&roles, &[]), None);
    }
}
