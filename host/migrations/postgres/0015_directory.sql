-- Enterprise identity (issue 20): accounts and groups an identity provider manages.
--
-- An account's identity at a source (`scim`, later an OIDC provider or the LDAP directory):
-- the provider's own id for it and the e-mail it gave. One identity per account and source,
-- and one account per identity.
CREATE TABLE external_identities (
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source      TEXT    NOT NULL,
    external_id TEXT,
    email       TEXT,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (user_id, source)
);
CREATE UNIQUE INDEX external_identities_id ON external_identities (source, external_id);

-- A group a provider manages, and its members. The operator maps group names to rooms and
-- roles in the configuration; a change of membership is applied there.
CREATE TABLE directory_groups (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    external_id TEXT,
    created_at  BIGINT  NOT NULL,
    UNIQUE (source, name)
);
CREATE TABLE directory_group_members (
    group_id BIGINT NOT NULL REFERENCES directory_groups (id) ON DELETE CASCADE,
    user_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX directory_group_members_user ON directory_group_members (user_id);

-- Values used once and soon: an OpenID Connect sign-in in flight (its state, nonce and PKCE
-- verifier) and the ticket that hands the finished sign-in to the browser. Kept in the
-- database, not a node's memory, so the provider may send the browser back to any node.
-- `key` is a digest of the secret the browser holds.
CREATE TABLE one_time_values (
    key        TEXT   PRIMARY KEY,
    kind       TEXT   NOT NULL,
    payload    TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX one_time_values_age ON one_time_values (created_at);
