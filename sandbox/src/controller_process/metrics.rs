//! The controller's `/metrics` as data: a parser for the Prometheus text
//! exposition format, and look-ups by metric name and labels.

use std::collections::BTreeMap;

/// One time series: a metric name and its labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A parsed Prometheus text exposition: every sample by series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    samples: BTreeMap<Series, f64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("metrics line {line}: {reason}: {text:?}")]
pub struct MetricsParseError {
    pub line: usize,
    pub reason: &'static str,
    pub text: String,
}

impl Metrics {
    /// Parses the Prometheus text format (comments and `# HELP`/`# TYPE`
    /// lines skipped, label values unescaped, a trailing timestamp ignored).
    pub fn parse(text: &str) -> Result<Metrics, MetricsParseError> {
        let mut samples = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |reason| MetricsParseError {
                line: index + 1,
                reason,
                text: line.to_string(),
            };
            let (series, rest) = parse_series(line).map_err(error)?;
            let value = rest
                .split_whitespace()
                .next()
                .ok_or_else(|| error("no value"))?;
            let value: f64 = value
                .parse()
                .map_err(|_| error("the value is not a number"))?;
            samples.insert(series, value);
        }
        Ok(Metrics { samples })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The sample of `name` whose labels are exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let series = Series {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        self.samples.get(&series).copied()
    }

    /// The sum over every series of `name` that has all of `labels` (and
    /// maybe more): `sum(name{labels})`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .filter(|(l, _)| {
                labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every series of `name`: its labels and value.
    pub fn series<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a BTreeMap<String, String>, f64)> + 'a {
        self.samples
            .iter()
            .filter(move |(s, _)| s.name == name)
            .map(|(s, v)| (&s.labels, *v))
    }
}

/// Splits `name{labels} rest` into the series and `rest`.
fn parse_series(line: &str) -> Result<(Series, &str), &'static str> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name");
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            while chars
                .next_if(|(_, c)| *c == ',' || c.is_whitespace())
                .is_some()
            {}
            let Some(&(start, c)) = chars.peek() else {
                return Err("unclosed label set");
            };
            if c == '}' {
                rest = &inner[start + 1..];
                break;
            }
            let mut key_end = start;
            while let Some((i, c)) = chars.next_if(|(_, c)| *c != '=') {
                key_end = i + c.len_utf8();
            }
            let key = inner[start..key_end].trim();
            if key.is_empty() || chars.next().is_none() {
                return Err("a label without a name or '='");
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("a label value without quotes");
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err("an unterminated label value"),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("an unterminated label value"),
                    },
                    Some((_, c)) => value.push(c),
                }
            }
            labels.insert(key.to_string(), value);
        }
    }
    Ok((
        Series {
            name: name.to_string(),
            labels,
        },
        rest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# HELP runway_kube_writes_total Writes to the Kubernetes API.
# TYPE runway_kube_writes_total counter
runway_kube_writes_total{verb="create",resource="pods"} 20
runway_kube_writes_total{verb="create",resource="secrets"} 20
runway_kube_writes_total{verb="delete",resource="pods"} 19
runway_kube_writes_total{resource="runnerscalesets/status",verb="patch"} 7 1700000000000
runway_github_requests_total{endpoint="GenerateJitConfig",code="200"} 20
runway_github_requests_total{endpoint="GetMessage",code="202"} 3.5e1
gha_desired_runners{name="arm",namespace="ci"} 0
weird{msg="a \"quoted\" \\ value\nnext", empty=""} +Inf
process_start_time_seconds 1.7e9
up NaN
"#;

    #[test]
    fn parses_names_labels_values_and_skips_comments() {
        let m = Metrics::parse(EXPOSITION).expect("parses");
        assert_eq!(m.len(), 10);
        // A metric name, labels to match, the value.
        type Case = (&'static str, &'static [(&'static str, &'static str)], f64);
        let cases: [Case; 5] = [
            (
                "runway_kube_writes_total",
                &[("verb", "create"), ("resource", "pods")],
                20.0,
            ),
            // Label order in the text does not matter; the timestamp is ignored.
            (
                "runway_kube_writes_total",
                &[("verb", "patch"), ("resource", "runnerscalesets/status")],
                7.0,
            ),
            ("process_start_time_seconds", &[], 1.7e9),
            (
                "gha_desired_runners",
                &[("name", "arm"), ("namespace", "ci")],
                0.0,
            ),
            (
                "weird",
                &[("msg", "a \"quoted\" \\ value\nnext"), ("empty", "")],
                f64::INFINITY,
            ),
        ];
        for (name, labels, value) in cases {
            assert_eq!(m.get(name, labels), Some(value), "{name} {labels:?}");
        }
        assert!(m.get("up", &[]).is_some_and(f64::is_nan));
        assert_eq!(
            m.get("runway_kube_writes_total", &[("verb", "create")]),
            None
        );
    }

    #[test]
    fn sums_over_the_series_that_match() {
        let m = Metrics::parse(EXPOSITION).expect("parses");
        assert_eq!(m.sum("runway_kube_writes_total", &[]), 66.0);
        assert_eq!(
            m.sum("runway_kube_writes_total", &[("resource", "pods")]),
            39.0
        );
        assert_eq!(
            m.sum("runway_kube_writes_total", &[("verb", "create")]),
            40.0
        );
        assert_eq!(m.sum("runway_github_requests_total", &[]), 55.0);
        assert_eq!(m.sum("absent", &[]), 0.0);
        assert_eq!(m.series("runway_github_requests_total").count(), 2);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        for (text, reason) in [
            ("a{b=\"c 1", "an unterminated label value"),
            ("a{b=c} 1", "a label value without quotes"),
            ("a 1\nb{x=\"1\"}", "no value"),
            ("a one", "the value is not a number"),
            ("a{b=\"c\"", "unclosed label set"),
        ] {
            let error = Metrics::parse(text).expect_err(text);
            assert_eq!(error.reason, reason, "{text}");
        }
        assert_eq!(Metrics::parse("a 1\nb{x=\"1\"}").unwrap_err().line, 2);
        assert!(Metrics::parse("").expect("empty is fine").is_empty());
    }
}
