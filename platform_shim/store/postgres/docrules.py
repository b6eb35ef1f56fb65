"""Schema version 5: the database enforces the document database's rules in the writer's commit.

Invariant: a ``db.*`` line of the ``events`` log commits only if it is valid against the rows as
they are when it is inserted (under the log's lock, so against every host's committed writes and
the earlier lines of the same commit); otherwise the trigger raises and the whole commit rolls
back. So a host needs no copy of the documents to validate a write, and two hosts racing cannot
both win. The rules, each with its SQLSTATE (``DETAIL`` is a JSON object the store parses into
the service's error, ``store/postgres/errors.py``):

``PD001`` duplicate key   ``db.document.created`` for an ``_id`` the collection holds (index
                          ``_id_``), or a document filing a key a unique index already holds
                          for another document. ``{"collection","index","value"}``.
``PD002`` stale write     ``db.document.updated``/``deleted`` whose ``data.before`` is not the
                          row's current document (it was planned from an older read): the
                          service reads again and plans again. ``{"collection","id"}``.
``PD003`` index clash     ``db.index.created`` naming an index the collection has with another
                          descriptor. ``{"collection","index","descriptor"}``. The same
                          descriptor again is a no-op.

Unique indexes keep their keys in ``platform.document_keys`` (primary key: collection, index,
key), maintained with the documents. A key is what ``services/dbindex.Index.keys_of`` files a
document under, as bytes: per field, ``platform.jkey`` of each value the path reaches (a missing
one and null are the null key ``\\x10``) and of each element of an array value (multikey); a
compound index takes every combination, each field's key length-prefixed so no two
combinations share bytes; a sparse index files nothing when every field is null or missing; a
partial index files only documents matching its filter, compiled by ``docfilter`` when the index
is created (the ``where`` beside the descriptor in the event) and stored in
``document_indexes.where_sql``. ``jkey`` equates numbers by value (``1`` and ``1.0``) and keeps
``true`` apart from ``1``, as ``index_key`` does (inside an object or array too, where
``index_key`` compares JSON text: there this check is the stricter one). A document ``jsonb``
cannot hold (a ``\\u0000`` in it, ``doc`` NULL) files no keys.

Version 6: **a unique key is checked when the commit ends, not after each line**, as the file
store checks a write once all of it is applied. A key another document holds when a line files
it waits in ``platform.document_key_waits`` (with the value, for the message); a deferred
constraint trigger takes each waiting key at commit, once every line is applied: still held by
another document, it is a duplicate (PD001, the whole commit rolls back); no longer wanted (its
document was changed again, or deleted, or the index dropped, in the same commit), it is
dropped. So ``update_many`` renumbering a unique field (``$inc`` over every document), or two
documents swapping their values, commit; the waits table is empty outside a commit.
"""

from __future__ import annotations

__all__ = ["V5", "V6"]

V5 = r"""
ALTER TABLE platform.document_indexes
    ADD COLUMN is_unique boolean NOT NULL DEFAULT false,
    ADD COLUMN where_sql text,
    ADD COLUMN created bigint;  -- the id of the event that created it: list_indexes' order

CREATE TABLE platform.document_keys (
    coll text NOT NULL,
    name text NOT NULL,
    key  bytea NOT NULL,
    id   text NOT NULL,
    PRIMARY KEY (coll, name, key)
);
CREATE INDEX document_keys_by_id ON platform.document_keys (coll, id);

-- The keys (and, for messages, the values) a document files under in one index: see the module
-- docstring. p_where: the partial filter as SQL over d.doc / d.id, or NULL.
CREATE FUNCTION platform.document_keys_of(p_doc jsonb, p_id text, p_index json, p_where text)
RETURNS TABLE (key bytea, value jsonb) LANGUAGE plpgsql AS $$
DECLARE
    pair json;
    leaf jsonb;
    item jsonb;
    ok boolean;
    k bytea;
    keys bytea[] := ARRAY[''::bytea];
    vals jsonb[] := ARRAY['[]'::jsonb];
    fkeys bytea[];
    fvals jsonb[];
    nkeys bytea[];
    nvals jsonb[];
    only_null boolean := true;
    single boolean := json_array_length(p_index -> 'keys') = 1;
BEGIN
    IF p_doc IS NULL THEN
        RETURN;
    END IF;
    IF p_where IS NOT NULL THEN
        EXECUTE 'SELECT ' || p_where || ' FROM (SELECT $1::jsonb AS doc, $2::text AS id) d'
            INTO ok USING p_doc, p_id;
        IF NOT coalesce(ok, false) THEN
            RETURN;
        END IF;
    END IF;
    FOR pair IN SELECT * FROM json_array_elements(p_index -> 'keys') LOOP
        fkeys := '{}';
        fvals := '{}';
        FOR leaf IN SELECT platform.jleaves(p_doc, string_to_array(pair ->> 0, '.')) LOOP
            leaf := coalesce(leaf, 'null'::jsonb);
            k := platform.jkey(leaf);
            IF NOT k = ANY(fkeys) THEN
                fkeys := array_append(fkeys, k);
                fvals := array_append(fvals, leaf);
            END IF;
            IF jsonb_typeof(leaf) = 'array' THEN
                FOR item IN SELECT jsonb_array_elements(leaf) LOOP
                    k := platform.jkey(item);
                    IF NOT k = ANY(fkeys) THEN
                        fkeys := array_append(fkeys, k);
                        fvals := array_append(fvals, item);
                    END IF;
                END LOOP;
            END IF;
        END LOOP;
        IF fkeys <> ARRAY['\x10'::bytea] THEN
            only_null := false;
        END IF;
        nkeys := '{}';
        nvals := '{}';
        FOR i IN 1 .. cardinality(keys) LOOP
            FOR j IN 1 .. cardinality(fkeys) LOOP
                nkeys := array_append(nkeys, keys[i] || int4send(length(fkeys[j])) || fkeys[j]);
                nvals := array_append(nvals, vals[i] || jsonb_build_array(fvals[j]));
            END LOOP;
        END LOOP;
        keys := nkeys;
        vals := nvals;
    END LOOP;
    IF only_null AND (p_index ->> 'sparse') = 'true' THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT u.k, CASE WHEN single THEN u.v -> 0 ELSE u.v END
        FROM unnest(keys, vals) AS u(k, v);
END $$;

CREATE FUNCTION platform.document_duplicate(p_coll text, p_index text, p_value jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'duplicate key in collection %: index % already has %', p_coll, p_index,
        p_value
        USING ERRCODE = 'PD001',
              DETAIL = json_build_object('collection', p_coll, 'index', p_index,
                                         'value', p_value)::text;
END $$;

-- File a document's keys in every unique index of its collection; a key another document
-- holds is a duplicate (PD001).
CREATE FUNCTION platform.document_keys_put(p_coll text, p_id text, p_doc jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    idx record;
    r record;
BEGIN
    FOR idx IN
        SELECT i.name, i.descriptor, i.where_sql FROM platform.document_indexes i
        WHERE i.coll = p_coll AND i.is_unique
    LOOP
        FOR r IN SELECT * FROM platform.document_keys_of(p_doc, p_id, idx.descriptor,
                                                         idx.where_sql) LOOP
            INSERT INTO platform.document_keys (coll, name, key, id)
            VALUES (p_coll, idx.name, r.key, p_id) ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                PERFORM platform.document_duplicate(p_coll, idx.name, r.value);
            END IF;
        END LOOP;
    END LOOP;
END $$;

CREATE FUNCTION platform.document_stale(p_coll text, p_id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'document % in collection % changed since this write read it', p_id, p_coll
        USING ERRCODE = 'PD002',
              DETAIL = json_build_object('collection', p_coll, 'id', p_id)::text;
END $$;

-- Apply one db.* event (its JSON line) to the tables, enforcing the rules above; rank: the
-- event's id. (\u0000 handling as in version 3: a line holding one is read with each \u0000
-- written as \uDBFF\uDFFF and the document's text given its \u0000 back; no jsonb for it.)
CREATE OR REPLACE FUNCTION platform.documents_line(raw bytea, p_checkpoint bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    txt text := convert_from(raw, 'UTF8');
    odd boolean := strpos(txt, '\u0000') > 0;
    line json;
    v_type text;
    v_coll text;
    v_key text;
    v_id text;
    v_rank bigint;
    v_body json;
    v_doc jsonb;
    v_before text;
    v_index json;
    v_name text;
    v_old json;
    clash record;
BEGIN
    IF odd THEN
        txt := replace(txt, '\u0000', '\uDBFF\uDFFF');
    END IF;
    line := txt::json;
    v_type := line ->> 't';
    v_coll := line ->> 'ns';
    v_key := line ->> 'k';
    v_rank := (line ->> 'id')::bigint;
    IF v_type IS NULL OR left(v_type, 3) <> 'db.' OR (line ->> 'r') IS DISTINCT FROM 'db'
            OR v_coll IS NULL OR v_rank <= p_checkpoint THEN
        RETURN;
    END IF;
    INSERT INTO platform.collections (coll) VALUES (v_coll) ON CONFLICT DO NOTHING;
    IF v_type IN ('db.document.updated', 'db.document.deleted') THEN
        -- The row must still be the document this write was planned from.
        v_id := CASE WHEN v_type = 'db.document.deleted' THEN v_key
                     ELSE line -> 'data' -> 'doc' ->> '_id' END;
        v_before := (line -> 'data' -> 'before')::text;
        IF odd THEN
            v_before := replace(v_before, '\uDBFF\uDFFF', '\u0000');
        END IF;
        PERFORM 1 FROM platform.documents d
        WHERE d.coll = v_coll AND d.id = v_id
          AND (d.body::text = v_before
               OR (d.doc IS NOT NULL AND strpos(v_before, '\u0000') = 0
                   AND d.doc = v_before::jsonb))
        FOR UPDATE;
        IF NOT FOUND THEN
            PERFORM platform.document_stale(v_coll, v_id);
        END IF;
        DELETE FROM platform.document_keys k WHERE k.coll = v_coll AND k.id = v_id;
    END IF;
    IF v_type IN ('db.document.created', 'db.document.updated') THEN
        v_body := line -> 'data' -> 'doc';
        v_id := v_body ->> '_id';
        IF odd THEN
            v_body := replace(v_body::text, '\uDBFF\uDFFF', '\u0000')::json;
        END IF;
        v_doc := CASE WHEN odd THEN NULL ELSE v_body::jsonb END;
        IF v_type = 'db.document.created' THEN
            INSERT INTO platform.documents (coll, id, rank, body, doc)
            VALUES (v_coll, v_id, v_rank, v_body, v_doc)
            ON CONFLICT (coll, id) DO NOTHING;
            IF NOT FOUND THEN
                PERFORM platform.document_duplicate(v_coll, '_id_', to_jsonb(v_id));
            END IF;
        ELSE
            UPDATE platform.documents d SET body = v_body, doc = v_doc
            WHERE d.coll = v_coll AND d.id = v_id;
        END IF;
        PERFORM platform.document_keys_put(v_coll, v_id, v_doc);
    ELSIF v_type = 'db.document.deleted' THEN
        DELETE FROM platform.documents d WHERE d.coll = v_coll AND d.id = v_key;
    ELSIF v_type = 'db.index.created' THEN
        v_index := line -> 'data' -> 'index';
        v_name := v_index ->> 'name';
        SELECT i.descriptor INTO v_old FROM platform.document_indexes i
        WHERE i.coll = v_coll AND i.name = v_name;
        IF FOUND THEN
            IF v_old::jsonb = v_index::jsonb THEN
                RETURN;  -- created by another host meanwhile, the same: nothing to do
            END IF;
            RAISE EXCEPTION 'collection % already has an index named % with another definition',
                v_coll, v_name
                USING ERRCODE = 'PD003',
                      DETAIL = json_build_object('collection', v_coll, 'index', v_name,
                                                 'descriptor', v_old)::text;
        END IF;
        INSERT INTO platform.document_indexes
            (coll, name, descriptor, is_unique, where_sql, created)
        VALUES (v_coll, v_name, v_index, (v_index ->> 'unique') = 'true',
                line -> 'data' ->> 'where', v_rank);
        IF (v_index ->> 'unique') = 'true' THEN
            -- The existing documents' keys; a key two of them share refuses the index.
            SELECT k.key, min(k.value::text)::jsonb AS value INTO clash
            FROM platform.documents d,
                 platform.document_keys_of(d.doc, d.id, v_index, line -> 'data' ->> 'where') k
            WHERE d.coll = v_coll GROUP BY k.key HAVING count(*) > 1 LIMIT 1;
            IF FOUND THEN
                PERFORM platform.document_duplicate(v_coll, v_name, clash.value);
            END IF;
            INSERT INTO platform.document_keys (coll, name, key, id)
            SELECT v_coll, v_name, k.key, d.id
            FROM platform.documents d,
                 platform.document_keys_of(d.doc, d.id, v_index, line -> 'data' ->> 'where') k
            WHERE d.coll = v_coll;
        END IF;
        PERFORM platform.documents_index_create(v_coll, v_index);
    ELSIF v_type = 'db.index.dropped' THEN
        DELETE FROM platform.document_indexes i WHERE i.coll = v_coll AND i.name = v_key;
        DELETE FROM platform.document_keys k WHERE k.coll = v_coll AND k.name = v_key;
        EXECUTE format('DROP INDEX IF EXISTS platform.%I',
                       platform.documents_index_name(v_coll, v_key, 'eq'));
        EXECUTE format('DROP INDEX IF EXISTS platform.%I',
                       platform.documents_index_name(v_coll, v_key, 'key'));
    END IF;
END $$;

-- The keys of the unique indexes that exist. A partial one has no compiled filter yet (it was
-- declared before this version): it is left unenforced by the database, with a warning.
DO $$
DECLARE
    idx record;
BEGIN
    FOR idx IN SELECT i.coll, i.name, i.descriptor FROM platform.document_indexes i
               WHERE (i.descriptor ->> 'unique') = 'true' LOOP
        IF (idx.descriptor -> 'partial') IS NOT NULL
                AND json_typeof(idx.descriptor -> 'partial') <> 'null' THEN
            RAISE WARNING 'platform: partial unique index % on % is not enforced by the'
                ' database until it is dropped and created again', idx.name, idx.coll;
            CONTINUE;
        END IF;
        UPDATE platform.document_indexes i SET is_unique = true
        WHERE i.coll = idx.coll AND i.name = idx.name;
        INSERT INTO platform.document_keys (coll, name, key, id)
        SELECT idx.coll, idx.name, k.key, d.id
        FROM platform.documents d,
             platform.document_keys_of(d.doc, d.id, idx.descriptor, NULL) k
        WHERE d.coll = idx.coll
        ON CONFLICT DO NOTHING;
    END LOOP;
END $$;
"""

V6 = r"""
CREATE TABLE platform.document_key_waits (
    wait  bigserial PRIMARY KEY,
    coll  text NOT NULL,
    name  text NOT NULL,
    key   bytea NOT NULL,
    id    text NOT NULL,
    value jsonb
);

-- File a document's keys in every unique index of its collection; a key another document holds
-- waits for the end of the commit (platform.document_key_settle).
CREATE OR REPLACE FUNCTION platform.document_keys_put(p_coll text, p_id text, p_doc jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    idx record;
    r record;
BEGIN
    FOR idx IN
        SELECT i.name, i.descriptor, i.where_sql FROM platform.document_indexes i
        WHERE i.coll = p_coll AND i.is_unique
    LOOP
        FOR r IN SELECT * FROM platform.document_keys_of(p_doc, p_id, idx.descriptor,
                                                         idx.where_sql) LOOP
            INSERT INTO platform.document_keys (coll, name, key, id)
            VALUES (p_coll, idx.name, r.key, p_id) ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                INSERT INTO platform.document_key_waits (coll, name, key, id, value)
                VALUES (p_coll, idx.name, r.key, p_id, r.value);
            END IF;
        END LOOP;
    END LOOP;
END $$;

-- At commit, for each waiting key: take it if its document still files it and nobody else
-- holds it; refuse the commit if another document does.
CREATE FUNCTION platform.document_key_settle() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    w record;
BEGIN
    DELETE FROM platform.document_key_waits x WHERE x.wait = NEW.wait RETURNING * INTO w;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM 1
    FROM platform.documents d
    JOIN platform.document_indexes i ON i.coll = d.coll AND i.name = w.name AND i.is_unique,
         platform.document_keys_of(d.doc, d.id, i.descriptor, i.where_sql) k
    WHERE d.coll = w.coll AND d.id = w.id AND k.key = w.key;
    IF NOT FOUND THEN
        RETURN NULL;  -- changed again, deleted, or its index dropped, in this same commit
    END IF;
    INSERT INTO platform.document_keys (coll, name, key, id)
    VALUES (w.coll, w.name, w.key, w.id) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        PERFORM 1 FROM platform.document_keys k
        WHERE k.coll = w.coll AND k.name = w.name AND k.key = w.key AND k.id = w.id;
        IF NOT FOUND THEN
            PERFORM platform.document_duplicate(w.coll, w.name, w.value);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER document_key_waits_settle AFTER INSERT ON platform.document_key_waits
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION platform.document_key_settle();
"""
