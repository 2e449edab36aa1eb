-- Tokens used with the language model per UTC day (`day`: days since 1970-01-01), per
-- person (`scope` = 'user') and per room (`scope` = 'room'): the daily budgets of `[llm]`.
CREATE TABLE llm_usage (
    day      INTEGER NOT NULL,
    scope    TEXT    NOT NULL,
    scope_id INTEGER NOT NULL,
    tokens   INTEGER NOT NULL,
    PRIMARY KEY (day, scope, scope_id)
);
