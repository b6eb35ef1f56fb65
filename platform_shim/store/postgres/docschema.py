"""Schema version 3: the document database's collections as rows, kept by the database itself.

Invariant: ``platform.documents`` holds exactly the documents the ``db.*`` records of the
``events`` log (its current generation, over the ``db`` snapshot) leave, and
``platform.document_indexes`` the index descriptors. A row trigger on ``platform.log_lines``
applies each ``db.*`` line of the current generation as it is inserted, in the inserting
transaction: a commit cycle that writes a record changes the row in the same commit, and a
cycle that fails changes neither. Lines a compaction copies into the next generation are not
the current generation's when they are inserted (the generation flips after), so nothing is
applied twice. The log stays the source of truth for the services' folds; these tables are a
view of it the database keeps, so queries can run there. The migration backfills them from the
snapshot and the live lines.

Columns: ``body`` is the document's JSON text exactly as written (``json`` keeps key order,
which a caller sees); ``doc`` is the same as ``jsonb`` for queries, or NULL for a document
``jsonb`` cannot hold (a ``\\u0000`` in a string): queries on a collection holding one fall
back to evaluating in Python. ``rank`` is the id of the event that created the document, so
``ORDER BY rank`` is the insertion order the in-memory collection scans in (an update keeps it).

SQL helpers mirror ``services/paths.py`` and ``services/compare.py`` (the query compiler,
``docfilter.py``, relies on them):

``platform.jleaves(doc, path)``  every value a dotted path reaches (NULL where it reaches
                                 nothing), with Mongo's one-level array traversal.
``platform.jkey(value)``         a ``bytea`` that sorts (byte-wise) exactly as
                                 ``compare.sort_key`` does: null < numbers < strings <
                                 objects < arrays < booleans; numbers by value (1 = 1.0),
                                 strings by code point, objects by sorted items, arrays element
                                 by element, a prefix first.
``platform.jleafkey(v, desc)``   a sort key for one leaf: a list sorts by its smallest (largest
                                 when descending) element, an empty list and missing as null.
``platform.jsortkey(doc, path, desc)``  the same over every leaf of a dotted path.
"""

from __future__ import annotations

__all__ = ["V3"]

V3 = r"""
DROP TABLE platform.documents;
DROP TABLE platform.document_indexes;

CREATE TABLE platform.collections (
    coll text PRIMARY KEY
);

CREATE TABLE platform.documents (
    coll text NOT NULL,
    id   text NOT NULL,
    rank bigint NOT NULL,
    body json NOT NULL,
    doc  jsonb,
    PRIMARY KEY (coll, id)
);
CREATE INDEX documents_by_rank ON platform.documents (coll, rank);
CREATE INDEX documents_unqueryable ON platform.documents (coll) WHERE doc IS NULL;

CREATE TABLE platform.document_indexes (
    coll       text NOT NULL,
    name       text NOT NULL,
    descriptor json NOT NULL,
    PRIMARY KEY (coll, name)
);

-- The real PostgreSQL indexes behind a collection's index (partial: this collection's rows).
-- For its top-level fields (a dotted path's leaves come from platform.jleaves, which no index
-- answers): a GIN index on the fields' values, which answers the compiled $eq/$in tests
-- (``doc -> 'f' @> value``), and a btree on their sort keys (``platform.jleafkey``), which
-- answers a sort on them. Named from a hash of (collection, index name): identifiers are
-- short, names are not.
CREATE FUNCTION platform.documents_index_name(p_coll text, p_name text, p_kind text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'documents_' || p_kind || '_' || left(md5(p_coll || chr(1) || p_name), 24)
$$;

CREATE FUNCTION platform.documents_index_create(p_coll text, p_index json) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    pair json;
    field text;
    descending boolean;
    values_of text[] := '{}';
    keys_of text[] := '{}';
BEGIN
    FOR pair IN SELECT * FROM json_array_elements(p_index -> 'keys') LOOP
        field := pair ->> 0;
        CONTINUE WHEN field IS NULL OR strpos(field, '.') > 0;
        descending := (pair ->> 1) = '-1';
        values_of := values_of || format('(doc -> %L)', field);
        keys_of := keys_of || format('platform.jleafkey(doc -> %L, %s', field,
            CASE WHEN descending THEN 'true) DESC' ELSE 'false)' END);
    END LOOP;
    IF cardinality(values_of) = 0 THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON platform.documents USING gin (%s)'
                   ' WHERE coll = %L',
                   platform.documents_index_name(p_coll, p_index ->> 'name', 'eq'),
                   array_to_string(values_of, ', '), p_coll);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON platform.documents (%s) WHERE coll = %L',
                   platform.documents_index_name(p_coll, p_index ->> 'name', 'key'),
                   array_to_string(keys_of, ', '), p_coll);
END $$;

-- Apply one db.* event (its JSON line) to the tables; rank: the event's id. PostgreSQL's JSON
-- functions refuse a \u0000 escape, so a line holding one is read with each \u0000 written as
-- \uDBFF\uDFFF (a surrogate pair orjson never writes: it writes that character as UTF-8), and
-- the document's text is given its \u0000 back; such a document gets no jsonb (doc NULL).
CREATE FUNCTION platform.documents_line(raw bytea, p_checkpoint bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    txt text := convert_from(raw, 'UTF8');
    odd boolean := strpos(txt, '\u0000') > 0;
    line json;
    v_type text;
    v_coll text;
    v_key text;
    v_rank bigint;
    v_body json;
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
    IF v_type IN ('db.document.created', 'db.document.updated') THEN
        v_body := line -> 'data' -> 'doc';
        IF odd THEN
            v_body := replace(v_body::text, '\uDBFF\uDFFF', '\u0000')::json;
        END IF;
        INSERT INTO platform.documents AS d (coll, id, rank, body, doc)
        VALUES (v_coll, line -> 'data' -> 'doc' ->> '_id', v_rank, v_body,
                CASE WHEN odd THEN NULL ELSE v_body::jsonb END)
        ON CONFLICT (coll, id) DO UPDATE SET body = excluded.body, doc = excluded.doc;
    ELSIF v_type = 'db.document.deleted' THEN
        DELETE FROM platform.documents d WHERE d.coll = v_coll AND d.id = v_key;
    ELSIF v_type = 'db.index.created' THEN
        INSERT INTO platform.document_indexes AS i (coll, name, descriptor)
        VALUES (v_coll, line -> 'data' -> 'index' ->> 'name', line -> 'data' -> 'index')
        ON CONFLICT (coll, name) DO UPDATE SET descriptor = excluded.descriptor;
        PERFORM platform.documents_index_create(v_coll, line -> 'data' -> 'index');
    ELSIF v_type = 'db.index.dropped' THEN
        DELETE FROM platform.document_indexes i WHERE i.coll = v_coll AND i.name = v_key;
        EXECUTE format('DROP INDEX IF EXISTS platform.%I',
                       platform.documents_index_name(v_coll, v_key, 'eq'));
        EXECUTE format('DROP INDEX IF EXISTS platform.%I',
                       platform.documents_index_name(v_coll, v_key, 'key'));
    END IF;
END $$;

-- Every line of the events log's current generation, as it is inserted. The substring test
-- skips most non-db lines without parsing them (a false hit is parsed and then ignored).
CREATE FUNCTION platform.log_lines_documents() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF position('"r":"db"'::bytea IN NEW.line) = 0 THEN
        RETURN NULL;
    END IF;
    IF NEW.generation IS DISTINCT FROM
            (SELECT g.generation FROM platform.logs g WHERE g.name = NEW.log) THEN
        RETURN NULL;  -- a compaction's copy: applied when first written
    END IF;
    PERFORM platform.documents_line(NEW.line, 0);
    RETURN NULL;
END $$;

CREATE TRIGGER log_lines_documents AFTER INSERT ON platform.log_lines
    FOR EACH ROW WHEN (NEW.log = 'events') EXECUTE FUNCTION platform.log_lines_documents();

-- The values a dotted path reaches (services/paths.py resolve): the first segment is a key;
-- then an object is looked up by key, a non-empty list by index (an all-digit segment without
-- a leading zero) or, for any other segment, in each of its object elements; anything else
-- reaches nothing (NULL).
CREATE FUNCTION platform.jleaves(doc jsonb, path text[]) RETURNS SETOF jsonb
LANGUAGE plpgsql IMMUTABLE ROWS 2 AS $$
DECLARE
    vals jsonb[] := ARRAY[doc -> path[1]];
    nxt jsonb[];
    v jsonb;
    item jsonb;
    seg text;
    is_index boolean;
    idx integer;
BEGIN
    FOR i IN 2 .. coalesce(array_length(path, 1), 1) LOOP
        seg := path[i];
        is_index := seg ~ '^(0|[1-9][0-9]*)$';
        idx := CASE WHEN is_index AND length(seg) <= 9 THEN seg::integer ELSE 2147483647 END;
        nxt := '{}';
        FOREACH v IN ARRAY vals LOOP
            IF jsonb_typeof(v) = 'object' THEN
                nxt := array_append(nxt, v -> seg);
            ELSIF jsonb_typeof(v) IS DISTINCT FROM 'array' OR jsonb_array_length(v) = 0 THEN
                nxt := array_append(nxt, NULL::jsonb);
            ELSIF is_index THEN
                nxt := array_append(nxt, v -> idx);
            ELSE
                FOR item IN SELECT jsonb_array_elements(v) LOOP
                    nxt := array_append(
                        nxt, CASE WHEN jsonb_typeof(item) = 'object' THEN item -> seg END);
                END LOOP;
            END IF;
        END LOOP;
        vals := nxt;
    END LOOP;
    RETURN QUERY SELECT unnest(vals);
END $$;

-- A number's sort key: 0x02 for zero; 0x03 then the decimal exponent (4 bytes, biased) and
-- the significant digits, 0x00-terminated, for a positive number; 0x01 then the exponent
-- negated and the digits complemented, 0xff-terminated, for a negative one (so a larger
-- magnitude sorts first).
CREATE FUNCTION platform.jnumkey(n numeric) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    t text;
    dot integer;
    whole text;
    frac text;
    digits text;
    e integer;
BEGIN
    IF n = 0 THEN
        RETURN '\x02'::bytea;
    END IF;
    t := abs(n)::text;
    dot := strpos(t, '.');
    IF dot = 0 THEN
        whole := t;
        frac := '';
    ELSE
        whole := left(t, dot - 1);
        frac := substr(t, dot + 1);
    END IF;
    whole := ltrim(whole, '0');
    IF whole <> '' THEN
        e := length(whole);
        digits := rtrim(whole || frac, '0');
    ELSE
        e := length(ltrim(frac, '0')) - length(frac);
        digits := rtrim(ltrim(frac, '0'), '0');
    END IF;
    IF n > 0 THEN
        RETURN '\x03'::bytea || int4send(e + 1073741824) || convert_to(digits, 'UTF8')
            || '\x00'::bytea;
    END IF;
    RETURN '\x01'::bytea || int4send(1073741824 - e)
        || convert_to(translate(digits, '0123456789', '9876543210'), 'UTF8') || '\xff'::bytea;
END $$;

CREATE FUNCTION platform.jkey(v jsonb) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    out bytea;
BEGIN
    CASE jsonb_typeof(v)
    WHEN 'null' THEN
        RETURN '\x10'::bytea;
    WHEN 'number' THEN
        RETURN '\x20'::bytea || platform.jnumkey(v::numeric);
    WHEN 'string' THEN
        RETURN '\x30'::bytea || convert_to(v #>> '{}', 'UTF8') || '\x00'::bytea;
    WHEN 'boolean' THEN
        RETURN CASE WHEN v = 'true'::jsonb THEN '\x6002'::bytea ELSE '\x6001'::bytea END;
    WHEN 'object' THEN
        SELECT string_agg(convert_to(e.k, 'UTF8') || '\x00'::bytea || platform.jkey(e.x),
                          ''::bytea ORDER BY e.k COLLATE "C")
            INTO out FROM jsonb_each(v) AS e(k, x);
        RETURN '\x40'::bytea || coalesce(out, ''::bytea) || '\x00'::bytea;
    ELSE
        SELECT string_agg(platform.jkey(e.x), ''::bytea ORDER BY e.n)
            INTO out FROM jsonb_array_elements(v) WITH ORDINALITY AS e(x, n);
        RETURN '\x50'::bytea || coalesce(out, ''::bytea) || '\x00'::bytea;
    END CASE;
END $$;

-- PL/pgSQL, not SQL: a SQL function with subqueries is not inlined and costs a plan per call
-- (jleafkey: 19 us a row here, against 5 for this).
CREATE FUNCTION platform.jleafkey(v jsonb, descending boolean) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    x jsonb;
    k bytea;
    best bytea;
BEGIN
    IF v IS NULL THEN
        RETURN '\x10'::bytea;
    ELSIF jsonb_typeof(v) <> 'array' THEN
        RETURN platform.jkey(v);
    END IF;
    FOR x IN SELECT jsonb_array_elements(v) LOOP
        k := platform.jkey(x);
        IF best IS NULL OR (descending AND k > best) OR (NOT descending AND k < best) THEN
            best := k;
        END IF;
    END LOOP;
    RETURN coalesce(best, '\x10'::bytea);  -- an empty list sorts as null
END $$;

CREATE FUNCTION platform.jsortkey(doc jsonb, path text[], descending boolean) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    leaf jsonb;
    k bytea;
    best bytea;
BEGIN
    FOR leaf IN SELECT platform.jleaves(doc, path) LOOP
        k := platform.jleafkey(leaf, descending);
        IF best IS NULL OR (descending AND k > best) OR (NOT descending AND k < best) THEN
            best := k;
        END IF;
    END LOOP;
    RETURN best;
END $$;

-- Backfill from what the events log already holds: the db snapshot, then the live lines past
-- its checkpoint. A line that does not parse is skipped, as the services' loader skips it.
DO $$
DECLARE
    snap bytea;
    text_line text;
    rec json;
    checkpoint bigint := 0;
    n bigint := 0;
    live integer;
    raw bytea;
BEGIN
    SELECT s.lines INTO snap FROM platform.snapshots s WHERE s.name = 'db';
    IF snap IS NOT NULL THEN
        FOR text_line IN
            SELECT x FROM regexp_split_to_table(convert_from(snap, 'UTF8'), E'\n') AS x
        LOOP
            CONTINUE WHEN text_line = '';
            BEGIN
                rec := replace(text_line, '\u0000', '\uDBFF\uDFFF')::json;
                IF json_typeof(rec) <> 'object' THEN
                    CONTINUE;
                ELSIF rec -> 'checkpoint' IS NOT NULL THEN
                    checkpoint := coalesce((rec ->> 'checkpoint')::bigint, 0);
                ELSIF json_typeof(rec -> 'index') = 'object' THEN
                    INSERT INTO platform.collections (coll) VALUES (rec ->> 'c')
                        ON CONFLICT DO NOTHING;
                    INSERT INTO platform.document_indexes (coll, name, descriptor)
                    VALUES (rec ->> 'c', rec -> 'index' ->> 'name', rec -> 'index')
                    ON CONFLICT (coll, name) DO UPDATE SET descriptor = excluded.descriptor;
                    PERFORM platform.documents_index_create(rec ->> 'c', rec -> 'index');
                ELSIF json_typeof(rec -> 'doc') = 'object' THEN
                    n := n + 1;
                    INSERT INTO platform.collections (coll) VALUES (rec ->> 'c')
                        ON CONFLICT DO NOTHING;
                    INSERT INTO platform.documents (coll, id, rank, body, doc)
                    VALUES (rec ->> 'c', rec -> 'doc' ->> '_id', n,
                            replace((rec -> 'doc')::text, '\uDBFF\uDFFF', '\u0000')::json,
                            CASE WHEN strpos(text_line, '\u0000') > 0 THEN NULL
                                 ELSE (rec -> 'doc')::jsonb END)
                    ON CONFLICT (coll, id) DO UPDATE SET body = excluded.body, doc = excluded.doc;
                END IF;
            EXCEPTION WHEN others THEN
                RAISE WARNING 'platform: skipped a damaged line of the db snapshot: %', SQLERRM;
            END;
        END LOOP;
    END IF;
    SELECT g.generation INTO live FROM platform.logs g WHERE g.name = 'events';
    FOR raw IN
        SELECT l.line FROM platform.log_lines l
        WHERE l.log = 'events' AND l.generation = live ORDER BY l.seq
    LOOP
        CONTINUE WHEN position('"r":"db"'::bytea IN raw) = 0;
        BEGIN
            PERFORM platform.documents_line(raw, checkpoint);
        EXCEPTION WHEN others THEN
            RAISE WARNING 'platform: skipped a damaged line of the events log: %', SQLERRM;
        END;
    END LOOP;
END $$;
"""
