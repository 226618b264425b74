/// Why an instance or plan is unusable.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    #[error("invalid json: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "invalid json at line {line} column {column}: {field} is {token}, which JSON does not \
         allow: give a finite number"
    )]
    NotANumber {
        field: String,
        token: &'static str,
        line: usize,
        column: usize,
    },
    #[error("unsupported format {found:?}, expected {expected:?}")]
    Format {
        found: String,
        expected: &'static str,
    },
    #[error("{what} {id:?}: {field} must be a finite number >= 0, got {value}")]
    Negative {
        what: &'static str,
        id: String,
        field: &'static str,
        value: f64,
    },
    #[error("{what} {id:?}: {field} must be > 0")]
    NotPositive {
        what: &'static str,
        id: String,
        field: &'static str,
    },
    #[error("duplicate {what} id {id:?}")]
    Duplicate { what: &'static str, id: String },
    #[error("{owner} names unknown {what} {id:?}")]
    Unknown {
        owner: String,
        what: &'static str,
        id: String,
    },
    #[error("instance is infeasible: {0}")]
    Infeasible(String),
    #[error("solver: {0}")]
    Solver(String),
    #[error("{0}")]
    Unsupported(String),
}
