"""Schema version 4: the KV store's keys as rows, kept by the database itself.

Invariant: ``platform.kv_entries`` holds exactly the keys the ``kv.*`` records of the ``events``
log (its current generation, over the ``kv`` snapshot) leave. A row trigger on
``platform.log_lines`` applies each ``kv.*`` line of the current generation as it is inserted,
in the inserting transaction, as ``KvState.apply_event`` folds it: ``kv.put`` sets the value
and expiration, ``kv.delete`` removes the key, ``kv.expired`` removes it only while its
expiration is the one the event names (a put after the expiry stays). Lines a compaction copies
into the next generation are not the current generation's when inserted, so nothing is applied
twice. On PostgreSQL this table is the KV store's only copy (``services/kv.py`` folds nothing
there and compaction writes an empty ``kv`` snapshot); the migration backfills it from the
snapshot and the live lines.

Columns: ``key`` sorts with ``COLLATE "C"`` (byte order of UTF-8, which is code-point order:
Python's ``str`` order); ``value`` is the value's JSON text exactly as the event holds it
(``json -> 'value'`` returns the text as written, which is what ``KvService.get_raw`` returns
on a folder); ``expiration`` in epoch milliseconds. A key or namespace holding ``\\u0000`` cannot
be a ``text`` (the service refuses one on this store; the backfill skips one with a warning).
"""

from __future__ import annotations

__all__ = ["V4"]

V4 = r"""
DROP TABLE IF EXISTS platform.kv;

CREATE TABLE platform.kv_entries (
    ns         text NOT NULL,
    key        text COLLATE "C" NOT NULL,
    value      text NOT NULL,
    expiration bigint,
    PRIMARY KEY (ns, key)
);
CREATE INDEX kv_entries_expiring ON platform.kv_entries (expiration)
    WHERE expiration IS NOT NULL;

-- Apply one kv.* event (its JSON line) to the table; lines up to p_checkpoint are skipped.
-- PostgreSQL's JSON functions refuse a \u0000 escape anywhere in what they parse, and a value
-- may hold one; so the value is never parsed: a line as the stream writes it
-- ({"id","t","r","ns","k","data":{"value":V,"expiration":E},"ts"}, V as written) is cut at the
-- first '"data":{"value":' (no string can hold that: a quote inside one is escaped) and at the
-- last ',"expiration":' (after it come only E and the line's end). Only the head is parsed.
-- A line in another shape (a hand edit) is parsed whole.
CREATE FUNCTION platform.kv_line(raw bytea, p_checkpoint bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    txt text := convert_from(raw, 'UTF8');
    cut integer := strpos(txt, '"data":{"value":');
    tail integer;
    head json;
    v_type text;
    v_ns text;
    v_key text;
    v_value text;
    v_exp bigint;
BEGIN
    IF cut = 0 THEN
        head := txt::json;
        v_value := (head -> 'data' -> 'value')::text;
        v_exp := (head -> 'data' ->> 'expiration')::bigint;
    ELSE
        head := (left(txt, cut - 1) || '"data":null}')::json;
    END IF;
    v_type := head ->> 't';
    IF v_type IS NULL OR left(v_type, 3) <> 'kv.' OR (head ->> 'r') IS DISTINCT FROM 'kv'
            OR (head ->> 'id')::bigint <= p_checkpoint THEN
        RETURN;
    END IF;
    IF cut > 0 AND v_type IN ('kv.put', 'kv.expired') THEN
        tail := length(txt) - strpos(reverse(txt), reverse(',"expiration":')) - 12;
        v_value := substr(txt, cut + 16, tail - cut - 16);
        v_exp := nullif(split_part(substr(txt, tail + 14), '}', 1), 'null')::bigint;
    END IF;
    v_ns := head ->> 'ns';
    v_key := head ->> 'k';
    IF v_type = 'kv.put' THEN
        INSERT INTO platform.kv_entries AS e (ns, key, value, expiration)
        VALUES (v_ns, v_key, v_value, v_exp)
        ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value,
                                            expiration = excluded.expiration;
    ELSIF v_type = 'kv.delete' THEN
        DELETE FROM platform.kv_entries e WHERE e.ns = v_ns AND e.key = v_key;
    ELSIF v_type = 'kv.expired' THEN
        DELETE FROM platform.kv_entries e
        WHERE e.ns = v_ns AND e.key = v_key AND e.expiration = v_exp;
    END IF;
END $$;

-- Every line of the events log's current generation, as it is inserted. The substring test
-- skips most non-kv lines without parsing them (a false hit is parsed and then ignored).
CREATE FUNCTION platform.log_lines_kv() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF position('"r":"kv"'::bytea IN NEW.line) = 0 THEN
        RETURN NULL;
    END IF;
    IF NEW.generation IS DISTINCT FROM
            (SELECT g.generation FROM platform.logs g WHERE g.name = NEW.log) THEN
        RETURN NULL;  -- a compaction's copy: applied when first written
    END IF;
    PERFORM platform.kv_line(NEW.line, 0);
    RETURN NULL;
END $$;

CREATE TRIGGER log_lines_kv AFTER INSERT ON platform.log_lines
    FOR EACH ROW WHEN (NEW.log = 'events') EXECUTE FUNCTION platform.log_lines_kv();

-- Backfill from what the events log already holds: the kv snapshot ({"ns","k","v","exp"} per
-- line after its header), then the live lines past its checkpoint. A line that does not parse
-- or does not fit (a \u0000 in a key) is skipped with a warning, as the services' loader skips it.
DO $$
DECLARE
    snap bytea;
    text_line text;
    rec json;
    cut integer;
    tail integer;
    checkpoint bigint := 0;
    live integer;
    raw bytea;
BEGIN
    SELECT s.lines INTO snap FROM platform.snapshots s WHERE s.name = 'kv';
    IF snap IS NOT NULL THEN
        FOR text_line IN
            SELECT x FROM regexp_split_to_table(convert_from(snap, 'UTF8'), E'\n') AS x
        LOOP
            CONTINUE WHEN text_line = '';
            BEGIN
                -- {"ns":N,"k":K,"v":V,"exp":E} as kvsnapshot.py writes it; V is not parsed
                -- (see kv_line): cut at the first ',"v":' and the last ',"exp":'.
                cut := strpos(text_line, ',"v":');
                tail := length(text_line) - strpos(reverse(text_line), ':"pxe",') - 5;
                IF cut > 0 AND tail > cut THEN
                    rec := (left(text_line, cut - 1) || '}')::json;
                ELSE
                    rec := text_line::json;
                END IF;
                IF json_typeof(rec) <> 'object' THEN
                    CONTINUE;
                ELSIF rec -> 'checkpoint' IS NOT NULL THEN
                    checkpoint := coalesce((rec ->> 'checkpoint')::bigint, 0);
                ELSIF json_typeof(rec -> 'ns') = 'string' AND json_typeof(rec -> 'k') = 'string'
                        AND cut > 0 AND tail > cut THEN
                    INSERT INTO platform.kv_entries (ns, key, value, expiration)
                    VALUES (rec ->> 'ns', rec ->> 'k', substr(text_line, cut + 5, tail - cut - 5),
                            nullif(split_part(substr(text_line, tail + 7), '}', 1),
                                   'null')::bigint)
                    ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value,
                                                        expiration = excluded.expiration;
                END IF;
            EXCEPTION WHEN others THEN
                RAISE WARNING 'platform: skipped a damaged line of the kv snapshot: %', SQLERRM;
            END;
        END LOOP;
    END IF;
    SELECT g.generation INTO live FROM platform.logs g WHERE g.name = 'events';
    FOR raw IN
        SELECT l.line FROM platform.log_lines l
        WHERE l.log = 'events' AND l.generation = live ORDER BY l.seq
    LOOP
        CONTINUE WHEN position('"r":"kv"'::bytea IN raw) = 0;
        BEGIN
            PERFORM platform.kv_line(raw, checkpoint);
        EXCEPTION WHEN others THEN
            RAISE WARNING 'platform: skipped a damaged line of the events log: %', SQLERRM;
        END;
    END LOOP;
END $$;
"""
