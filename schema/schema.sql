--
-- PostgreSQL database dump
--

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: public; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA public;

--
-- Name: SCHEMA public; Type: COMMENT; Schema: -; Owner: -
--

COMMENT ON SCHEMA public IS 'standard public schema';

--
-- Name: allocate_nebula_ip(uuid, uuid, uuid, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.allocate_nebula_ip(p_project_id uuid, p_device_id uuid, p_allocated_by uuid, p_now timestamp with time zone DEFAULT now()) RETURNS inet
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_ip inet;
  v_usage record;
begin
  -- Locking the device row first serializes calls for one device, so a racing
  -- second call waits and then returns the address the first one took.
  select d.nebula_ip into v_ip
  from public.user_devices d
  where d.project_id = p_project_id and d.id = p_device_id
  for update;

  if not found then
    raise exception 'device % not found in project %', p_device_id, p_project_id
      using errcode = 'VS002',
        hint = 'Create the device row before allocating an address.';
  end if;

  if v_ip is not null then
    return v_ip;
  end if;

  -- The CTE runs once and marks exactly one row taken in this statement;
  -- SKIP LOCKED lets concurrent allocators pass rows that others are taking.
  -- A row that another allocator took and committed after this statement's
  -- snapshot stays locked by this transaction although the scan passes it.
  -- When the scan finds nothing, the block rolls back to release those
  -- locks: the waiting scan below could otherwise wait for an allocator
  -- that waits for one of them.
  begin
    with candidate as (
      select p.ip
      from public.nebula_ip_pool p
      where p.project_id = p_project_id
        and p.device_id is null
        and (p.quarantined_until is null or p.quarantined_until <= p_now)
      order by p.ip
      limit 1
      for update skip locked
    )
    update public.nebula_ip_pool p
    set device_id = p_device_id, allocated_at = p_now, quarantined_until = null
    from candidate c
    where p.project_id = p_project_id and p.ip = c.ip
    returning p.ip into v_ip;

    if v_ip is null then
      -- Caught right below; it never reaches a caller.
      raise exception 'no unlocked free row' using errcode = 'VS011';
    end if;
  exception when sqlstate 'VS011' then
    v_ip := null;
  end;

  -- Every free row is locked, but an allocation holding one may still roll
  -- back. This scan waits for each holder in address order. In READ
  -- COMMITTED, a row that the holder took is then re-checked and passed, so
  -- nothing is found only when no free row remains.
  if v_ip is null then
    with candidate as (
      select p.ip
      from public.nebula_ip_pool p
      where p.project_id = p_project_id
        and p.device_id is null
        and (p.quarantined_until is null or p.quarantined_until <= p_now)
      order by p.ip
      limit 1
      for update
    )
    update public.nebula_ip_pool p
    set device_id = p_device_id, allocated_at = p_now, quarantined_until = null
    from candidate c
    where p.project_id = p_project_id and p.ip = c.ip
    returning p.ip into v_ip;
  end if;

  if v_ip is null then
    select * into v_usage from public.get_nebula_ip_pool_usage(p_project_id, p_now);
    raise exception 'address pool of project % is exhausted', p_project_id
      using errcode = 'VS001',
        detail = format(
          'total=%s allocated=%s quarantined=%s free=%s',
          v_usage.total, v_usage.allocated, v_usage.quarantined, v_usage.free
        ),
        hint = 'Release idle devices or set the project up with a larger prefix.';
  end if;

  update public.user_devices d
  set nebula_ip = v_ip, updated_at = p_now
  where d.project_id = p_project_id and d.id = p_device_id;

  insert into public.nebula_ip_allocations
    (project_id, ip, device_id, allocated_by, allocated_at)
  values (p_project_id, v_ip, p_device_id, p_allocated_by, p_now);

  return v_ip;
end
$$;

--
-- Name: FUNCTION allocate_nebula_ip(p_project_id uuid, p_device_id uuid, p_allocated_by uuid, p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.allocate_nebula_ip(p_project_id uuid, p_device_id uuid, p_allocated_by uuid, p_now timestamp with time zone) IS 'Returns the device''s address, allocating the lowest free one if it has none; raises VS001 only when no free row remains, after waiting for allocations that hold the last ones.';

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: audit_log; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit_log (
    id bigint NOT NULL,
    project_id uuid,
    seq bigint NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    actor_id uuid,
    actor_type text NOT NULL,
    action text NOT NULL,
    target_type text,
    target_id text,
    client_ip inet,
    user_agent text,
    request_id text,
    before jsonb,
    after jsonb,
    outcome text NOT NULL,
    error_code text,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    CONSTRAINT audit_log_action_length CHECK (((char_length(action) >= 1) AND (char_length(action) <= 100))),
    CONSTRAINT audit_log_actor_type_valid CHECK ((actor_type = ANY (ARRAY['user'::text, 'service'::text, 'system'::text, 'anonymous'::text]))),
    CONSTRAINT audit_log_hash_length CHECK (((octet_length(prev_hash) = 32) AND (octet_length(hash) = 32))),
    CONSTRAINT audit_log_outcome_valid CHECK ((outcome = ANY (ARRAY['allowed'::text, 'refused'::text]))),
    CONSTRAINT audit_log_refusal_has_code CHECK (((outcome = 'refused'::text) = (error_code IS NOT NULL))),
    CONSTRAINT audit_log_request_id_length CHECK ((char_length(request_id) <= 200)),
    CONSTRAINT audit_log_user_agent_length CHECK ((char_length(user_agent) <= 1000))
);

--
-- Name: TABLE audit_log; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.audit_log IS 'Append-only record of every change and refused attempt; each project''s rows form a SHA-256 hash chain.';

--
-- Name: COLUMN audit_log.project_id; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.audit_log.project_id IS 'Project the event belongs to; null for events outside any project (they form their own chain).';

--
-- Name: COLUMN audit_log.seq; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.audit_log.seq IS 'Position in the project''s chain, starting at 1 with no gaps; a gap means a deleted row.';

--
-- Name: COLUMN audit_log.actor_type; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.audit_log.actor_type IS 'user (access token), service (service role key or cron secret), system (database job) or anonymous.';

--
-- Name: COLUMN audit_log.action; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.audit_log.action IS 'Dotted verb such as device.register, device.renew, device.release, certificate.revoke, device.reclaim.';

--
-- Name: COLUMN audit_log.outcome; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.audit_log.outcome IS 'allowed when the change happened, refused when it was rejected (error_code says why).';

--
-- Name: COLUMN audit_log.prev_hash; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.audit_log.prev_hash IS 'hash of the previous row of the same chain; 32 zero bytes for the first row.';

--
-- Name: COLUMN audit_log.hash; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.audit_log.hash IS 'sha256(prev_hash || canonical row content), see public.audit_log_row_hash.';

--
-- Name: append_audit_event(uuid, uuid, text, text, text, text, text, text, jsonb, jsonb, inet, text, text, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.append_audit_event(p_project_id uuid, p_actor_id uuid, p_actor_type text, p_action text, p_target_type text DEFAULT NULL::text, p_target_id text DEFAULT NULL::text, p_outcome text DEFAULT 'allowed'::text, p_error_code text DEFAULT NULL::text, p_before jsonb DEFAULT NULL::jsonb, p_after jsonb DEFAULT NULL::jsonb, p_client_ip inet DEFAULT NULL::inet, p_user_agent text DEFAULT NULL::text, p_request_id text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT now()) RETURNS public.audit_log
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_key uuid := public.audit_log_chain_key(p_project_id);
  v_head public.audit_log_heads;
  v_row public.audit_log;
begin
  if p_outcome is null or p_outcome not in ('allowed', 'refused')
    or (p_outcome = 'refused') <> (p_error_code is not null)
  then
    raise exception 'invalid audit event outcome % with error code %',
      p_outcome, p_error_code
      using errcode = 'VS102',
        hint = 'Use outcome allowed without error code, or refused with the error code.';
  end if;

  insert into public.audit_log_heads (chain_key, seq, hash)
  values (v_key, 0, '\x0000000000000000000000000000000000000000000000000000000000000000')
  on conflict (chain_key) do nothing;

  -- The row lock serializes writers of one chain until commit.
  select h.* into v_head
  from public.audit_log_heads h
  where h.chain_key = v_key
  for update;

  v_row.project_id := p_project_id;
  v_row.seq := v_head.seq + 1;
  v_row.occurred_at := p_now;
  v_row.actor_id := p_actor_id;
  v_row.actor_type := p_actor_type;
  v_row.action := p_action;
  v_row.target_type := p_target_type;
  v_row.target_id := p_target_id;
  v_row.client_ip := p_client_ip;
  v_row.user_agent := p_user_agent;
  v_row.request_id := p_request_id;
  v_row.before := p_before;
  v_row.after := p_after;
  v_row.outcome := p_outcome;
  v_row.error_code := p_error_code;
  v_row.prev_hash := v_head.hash;
  v_row.hash := public.audit_log_row_hash(v_head.hash, v_row);

  insert into public.audit_log (
    project_id, seq, occurred_at, actor_id, actor_type, action, target_type,
    target_id, client_ip, user_agent, request_id, before, after, outcome,
    error_code, prev_hash, hash
  ) values (
    v_row.project_id, v_row.seq, v_row.occurred_at, v_row.actor_id,
    v_row.actor_type, v_row.action, v_row.target_type, v_row.target_id,
    v_row.client_ip, v_row.user_agent, v_row.request_id, v_row.before,
    v_row.after, v_row.outcome, v_row.error_code, v_row.prev_hash, v_row.hash
  )
  returning * into v_row;

  update public.audit_log_heads h
  set seq = v_row.seq, hash = v_row.hash
  where h.chain_key = v_key;

  return v_row;
end
$$;

--
-- Name: FUNCTION append_audit_event(p_project_id uuid, p_actor_id uuid, p_actor_type text, p_action text, p_target_type text, p_target_id text, p_outcome text, p_error_code text, p_before jsonb, p_after jsonb, p_client_ip inet, p_user_agent text, p_request_id text, p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.append_audit_event(p_project_id uuid, p_actor_id uuid, p_actor_type text, p_action text, p_target_type text, p_target_id text, p_outcome text, p_error_code text, p_before jsonb, p_after jsonb, p_client_ip inet, p_user_agent text, p_request_id text, p_now timestamp with time zone) IS 'Appends one event to its project''s hash chain and returns the stored row.';

--
-- Name: assign_nebula_lighthouse_ip(uuid, uuid, inet, uuid, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.assign_nebula_lighthouse_ip(p_project_id uuid, p_device_id uuid, p_ip inet, p_allocated_by uuid, p_now timestamp with time zone DEFAULT now()) RETURNS inet
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_current inet;
  v_lighthouse record;
begin
  select d.nebula_ip into v_current
  from public.user_devices d
  where d.project_id = p_project_id and d.id = p_device_id
  for update;

  if not found then
    raise exception 'device % not found in project %', p_device_id, p_project_id
      using errcode = 'VS002';
  end if;

  select l.* into v_lighthouse
  from public.nebula_lighthouses l
  where l.project_id = p_project_id and host(l.ip) = host(p_ip)
  for update;

  if not found then
    raise exception 'no lighthouse with address % in project %', p_ip, p_project_id
      using errcode = 'VS005',
        hint = 'Add the lighthouse to the project first.';
  end if;

  if v_lighthouse.device_id is not null and v_lighthouse.device_id <> p_device_id then
    raise exception 'lighthouse % is taken by another device', p_ip
      using errcode = 'VS006',
        hint = 'Release the other lighthouse device first.';
  end if;

  if v_current is not null then
    if host(v_current) = host(v_lighthouse.ip) then
      return v_current;
    end if;
    raise exception 'device % already has address %', p_device_id, v_current
      using errcode = 'VS007',
        hint = 'Release the device before registering it as a lighthouse.';
  end if;

  update public.nebula_lighthouses l
  set device_id = p_device_id
  where l.project_id = p_project_id and l.ip = v_lighthouse.ip;

  update public.user_devices d
  set nebula_ip = v_lighthouse.ip, is_lighthouse = true, updated_at = p_now
  where d.project_id = p_project_id and d.id = p_device_id;

  insert into public.nebula_ip_allocations
    (project_id, ip, device_id, allocated_by, allocated_at)
  values (p_project_id, v_lighthouse.ip, p_device_id, p_allocated_by, p_now);

  return v_lighthouse.ip;
end
$$;

--
-- Name: FUNCTION assign_nebula_lighthouse_ip(p_project_id uuid, p_device_id uuid, p_ip inet, p_allocated_by uuid, p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.assign_nebula_lighthouse_ip(p_project_id uuid, p_device_id uuid, p_ip inet, p_allocated_by uuid, p_now timestamp with time zone) IS 'Gives a device the reserved address of one of the project''s lighthouses.';

--
-- Name: audit_log_chain_key(uuid); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.audit_log_chain_key(p_project_id uuid) RETURNS uuid
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select coalesce(p_project_id, '00000000-0000-0000-0000-000000000000'::uuid)
$$;

--
-- Name: FUNCTION audit_log_chain_key(p_project_id uuid); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.audit_log_chain_key(p_project_id uuid) IS 'Key of a project''s chain in audit_log_heads; events without project share the nil uuid.';

--
-- Name: audit_log_refuse_change(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.audit_log_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  raise exception 'audit_log is append-only: % refused', tg_op
    using errcode = 'VS101',
      detail = 'Rows of public.audit_log are never updated, deleted or truncated, by any role.',
      hint = 'Append a new event with public.append_audit_event instead.';
end
$$;

--
-- Name: FUNCTION audit_log_refuse_change(); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.audit_log_refuse_change() IS 'Trigger function that rejects every update, delete and truncate of audit_log.';

--
-- Name: audit_log_row_hash(bytea, public.audit_log); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.audit_log_row_hash(p_prev_hash bytea, p_row public.audit_log) RETURNS bytea
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select sha256(
    p_prev_hash || convert_to(
      jsonb_build_array(
        p_row.project_id,
        p_row.seq,
        (extract(epoch from p_row.occurred_at) * 1000000)::bigint,
        p_row.actor_id,
        p_row.actor_type,
        p_row.action,
        p_row.target_type,
        p_row.target_id,
        host(p_row.client_ip),
        p_row.user_agent,
        p_row.request_id,
        p_row.before,
        p_row.after,
        p_row.outcome,
        p_row.error_code
      )::text,
      'UTF8'
    )
  )
$$;

--
-- Name: FUNCTION audit_log_row_hash(p_prev_hash bytea, p_row public.audit_log); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.audit_log_row_hash(p_prev_hash bytea, p_row public.audit_log) IS 'sha256(prev_hash || canonical JSON of the row''s content columns); id, prev_hash and hash are not part of it.';

--
-- Name: rate_limit_policies; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.rate_limit_policies (
    id bigint NOT NULL,
    project_id uuid,
    scope text NOT NULL,
    endpoint text NOT NULL,
    capacity integer NOT NULL,
    refill_per_second numeric NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT rate_limit_policies_capacity_positive CHECK ((capacity > 0)),
    CONSTRAINT rate_limit_policies_endpoint_length CHECK (((char_length(endpoint) >= 1) AND (char_length(endpoint) <= 100))),
    CONSTRAINT rate_limit_policies_refill_positive CHECK ((refill_per_second > (0)::numeric)),
    CONSTRAINT rate_limit_policies_scope_valid CHECK ((scope = ANY (ARRAY['user'::text, 'device'::text, 'ip'::text])))
);

--
-- Name: TABLE rate_limit_policies; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.rate_limit_policies IS 'Bucket sizes: per project or default (project_id null), per scope, per endpoint or every endpoint (''*'').';

--
-- Name: COLUMN rate_limit_policies.capacity; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.rate_limit_policies.capacity IS 'Maximum tokens in a bucket: the burst a caller may send at once.';

--
-- Name: COLUMN rate_limit_policies.refill_per_second; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.rate_limit_policies.refill_per_second IS 'Tokens added per second, up to capacity: the sustained request rate.';

--
-- Name: find_rate_limit_policy(uuid, text, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.find_rate_limit_policy(p_project_id uuid, p_scope text, p_endpoint text) RETURNS public.rate_limit_policies
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  -- The most specific row wins: project before default, endpoint before '*'.
  select r.*
  from public.rate_limit_policies r
  where r.scope = p_scope
    and (r.project_id = p_project_id or r.project_id is null)
    and r.endpoint in (p_endpoint, '*')
  order by r.project_id is null, r.endpoint = '*'
  limit 1
$$;

--
-- Name: FUNCTION find_rate_limit_policy(p_project_id uuid, p_scope text, p_endpoint text); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.find_rate_limit_policy(p_project_id uuid, p_scope text, p_endpoint text) IS 'Returns the policy for a scope and endpoint: the project''s own, else the default; an exact endpoint beats ''*''.';

--
-- Name: get_nebula_blocklist(uuid, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.get_nebula_blocklist(p_project_id uuid, p_now timestamp with time zone DEFAULT now()) RETURNS SETOF text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  -- An expired certificate is refused by Nebula anyway, so it leaves the list.
  select c.fingerprint
  from public.nebula_certificates c
  where c.project_id = p_project_id
    and c.revoked_at is not null
    and c.not_after > p_now
  order by c.fingerprint
$$;

--
-- Name: FUNCTION get_nebula_blocklist(p_project_id uuid, p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.get_nebula_blocklist(p_project_id uuid, p_now timestamp with time zone) IS 'Lowercase hex fingerprints for pki.blocklist: revoked certificates of the project that have not expired at p_now.';

--
-- Name: get_nebula_device_allocation(uuid, uuid); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.get_nebula_device_allocation(p_project_id uuid, p_device_id uuid) RETURNS TABLE(device_id uuid, ip inet, is_lighthouse boolean, allocated_at timestamp with time zone)
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select d.id, d.nebula_ip, d.is_lighthouse, a.allocated_at
  from public.user_devices d
  left join public.nebula_ip_allocations a
    on a.project_id = d.project_id
    and a.device_id = d.id
    and a.released_at is null
  where d.project_id = p_project_id and d.id = p_device_id
$$;

--
-- Name: FUNCTION get_nebula_device_allocation(p_project_id uuid, p_device_id uuid); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.get_nebula_device_allocation(p_project_id uuid, p_device_id uuid) IS 'Returns one device''s current address (null when released).';

--
-- Name: get_nebula_ip_pool_usage(uuid, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.get_nebula_ip_pool_usage(p_project_id uuid, p_now timestamp with time zone DEFAULT now()) RETURNS TABLE(total bigint, allocated bigint, quarantined bigint, free bigint)
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select
    count(*),
    count(*) filter (where p.device_id is not null),
    count(*) filter (where p.device_id is null and p.quarantined_until > p_now),
    count(*) filter (
      where p.device_id is null
        and (p.quarantined_until is null or p.quarantined_until <= p_now)
    )
  from public.nebula_ip_pool p
  where p.project_id = p_project_id
$$;

--
-- Name: FUNCTION get_nebula_ip_pool_usage(p_project_id uuid, p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.get_nebula_ip_pool_usage(p_project_id uuid, p_now timestamp with time zone) IS 'Counts a project''s pool rows: total, allocated, quarantined and free at p_now.';

--
-- Name: is_nebula_public_key_revoked(uuid, bytea); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.is_nebula_public_key_revoked(p_project_id uuid, p_public_key bytea) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  perform public.lock_nebula_public_key(p_project_id, p_public_key);
  return exists (
    select 1
    from public.nebula_certificates c
    where c.project_id = p_project_id
      and c.public_key = p_public_key
      and c.revoked_at is not null
      and c.revocation_reason <> all (public.nebula_lifecycle_revocation_reasons())
  );
end
$$;

--
-- Name: FUNCTION is_nebula_public_key_revoked(p_project_id uuid, p_public_key bytea); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.is_nebula_public_key_revoked(p_project_id uuid, p_public_key bytea) IS 'Takes the key''s advisory lock until the transaction ends, then returns true when a certificate for this public key was revoked through nebula-revoke in the project, expired or not.';

--
-- Name: is_project_admin(uuid); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.is_project_admin(p_project_id uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select exists (
    select 1
    from public.project_members m
    where m.project_id = p_project_id
      and m.user_id = auth.uid()
      and m.role in ('owner', 'admin')
  )
$$;

--
-- Name: FUNCTION is_project_admin(p_project_id uuid); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.is_project_admin(p_project_id uuid) IS 'True when the user of the current access token is an owner or admin of the project.';

--
-- Name: is_project_member(uuid); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.is_project_member(p_project_id uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select exists (
    select 1
    from public.project_members m
    where m.project_id = p_project_id and m.user_id = auth.uid()
  )
$$;

--
-- Name: FUNCTION is_project_member(p_project_id uuid); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.is_project_member(p_project_id uuid) IS 'True when the user of the current access token is a member of the project.';

--
-- Name: list_nebula_ip_allocations(uuid); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.list_nebula_ip_allocations(p_project_id uuid) RETURNS TABLE(device_id uuid, ip inet, is_lighthouse boolean, allocated_at timestamp with time zone)
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select d.id, d.nebula_ip, d.is_lighthouse, a.allocated_at
  from public.user_devices d
  join public.nebula_ip_allocations a
    on a.project_id = d.project_id
    and a.device_id = d.id
    and a.released_at is null
  where d.project_id = p_project_id
  order by d.nebula_ip
$$;

--
-- Name: FUNCTION list_nebula_ip_allocations(p_project_id uuid); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.list_nebula_ip_allocations(p_project_id uuid) IS 'Lists the current allocations of a project in address order.';

--
-- Name: lock_free_nebula_lighthouse(uuid, uuid); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.lock_free_nebula_lighthouse(p_project_id uuid, p_device_id uuid) RETURNS inet
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_ip inet;
begin
  -- The device's own lighthouse first, then the lowest free one. SKIP
  -- LOCKED passes rows that concurrent registrations are taking. A row that
  -- one of them took and committed after this statement's snapshot stays
  -- locked by this transaction although the scan passes it. When the scan
  -- finds nothing, the block rolls back to release those locks: the waiting
  -- scan below could otherwise wait for a registration that waits for one.
  begin
    select l.ip into v_ip
    from public.nebula_lighthouses l
    where l.project_id = p_project_id
      and (l.device_id is null or l.device_id = p_device_id)
    order by l.device_id is null, l.ip
    limit 1
    for update skip locked;

    if found then
      return v_ip;
    end if;
    -- Caught right below; it never reaches a caller.
    raise exception 'no unlocked free lighthouse' using errcode = 'VS011';
  exception when sqlstate 'VS011' then
    v_ip := null;
  end;

  -- Every matching row is locked, but a registration holding one may still
  -- roll back. This scan waits for each holder in address order. In READ
  -- COMMITTED, a row that the holder took is then re-checked and passed, so
  -- the result is null only when no lighthouse is free.
  select l.ip into v_ip
  from public.nebula_lighthouses l
  where l.project_id = p_project_id
    and (l.device_id is null or l.device_id = p_device_id)
  order by l.device_id is null, l.ip
  limit 1
  for update;

  return v_ip;
end
$$;

--
-- Name: FUNCTION lock_free_nebula_lighthouse(p_project_id uuid, p_device_id uuid); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.lock_free_nebula_lighthouse(p_project_id uuid, p_device_id uuid) IS 'Locks and returns the device''s own lighthouse address or the lowest free one, passing rows that concurrent registrations hold while another is free; null when none is free.';

--
-- Name: lock_nebula_key_devices(uuid, bytea[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.lock_nebula_key_devices(p_project_id uuid, p_public_keys bytea[]) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_key bytea;
begin
  perform 1
  from public.user_devices d
  where d.project_id = p_project_id
    and (d.public_key = any (p_public_keys)
      or exists (
        select 1
        from public.nebula_certificates c
        where c.project_id = d.project_id and c.device_id = d.id
          and c.public_key = any (p_public_keys)))
  order by d.id
  for update of d;

  for v_key in
    select distinct k from unnest(p_public_keys) as k where k is not null order by k
  loop
    perform public.lock_nebula_public_key(p_project_id, v_key);
  end loop;
end
$$;

--
-- Name: FUNCTION lock_nebula_key_devices(p_project_id uuid, p_public_keys bytea[]); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.lock_nebula_key_devices(p_project_id uuid, p_public_keys bytea[]) IS 'Locks, in id order, the project''s devices that hold one of the public keys or have a certificate for one, then the keys themselves in byte order.';

--
-- Name: lock_nebula_public_key(uuid, bytea); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.lock_nebula_public_key(p_project_id uuid, p_public_key bytea) RETURNS void
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  -- A hash collision between two keys only makes one wait for the other.
  select pg_advisory_xact_lock(
    hashtextextended(p_project_id::text || ':' || encode(p_public_key, 'hex'), 0)
  )
$$;

--
-- Name: FUNCTION lock_nebula_public_key(p_project_id uuid, p_public_key bytea); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.lock_nebula_public_key(p_project_id uuid, p_public_key bytea) IS 'Takes the advisory lock of a public key in a project until the transaction ends; registration, renewal and revocation take it before they read or revoke the key.';

--
-- Name: nebula_ip_allocations_guard(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.nebula_ip_allocations_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  if tg_op = 'DELETE' then
    raise exception 'nebula_ip_allocations is append-only'
      using errcode = 'VS010', hint = 'History rows are never deleted.';
  end if;
  if old.released_at is not null
    or (new.project_id, new.ip, new.device_id, new.allocated_by, new.allocated_at)
      is distinct from
      (old.project_id, old.ip, old.device_id, old.allocated_by, old.allocated_at)
  then
    raise exception 'nebula_ip_allocations is append-only'
      using errcode = 'VS010',
        hint = 'Only released_at may be set, once.';
  end if;
  return new;
end
$$;

--
-- Name: nebula_lifecycle_revocation_reasons(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.nebula_lifecycle_revocation_reasons() RETURNS text[]
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select array['key_changed', 'released', 'reclaimed']
$$;

--
-- Name: FUNCTION nebula_lifecycle_revocation_reasons(); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.nebula_lifecycle_revocation_reasons() IS 'Revocation reasons the product writes itself (key change, release, reclaim); revocations with any other reason were requested through nebula-revoke.';

--
-- Name: populate_nebula_ip_pool(uuid, cidr, inet[]); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.populate_nebula_ip_pool(p_project_id uuid, p_cidr cidr, p_reserved inet[] DEFAULT '{}'::inet[]) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_count integer;
begin
  if family(p_cidr) <> 4 or masklen(p_cidr) not between 8 and 30 then
    raise exception 'invalid pool prefix %', p_cidr
      using errcode = 'VS004',
        detail = 'A pool is an IPv4 prefix from /8 to /30.',
        hint = 'Use a prefix such as 10.42.0.0/24.';
  end if;

  -- One set-based statement: offsets 1 .. size-2 skip the network and the
  -- broadcast address; reserved addresses (lighthouses) are left out.
  insert into public.nebula_ip_pool (project_id, ip)
  select p_project_id, p_cidr::inet + g.offset_in_prefix
  from generate_series(1::bigint, (2::bigint ^ (32 - masklen(p_cidr)))::bigint - 2)
    as g (offset_in_prefix)
  where host(p_cidr::inet + g.offset_in_prefix) <> all (
    select host(r) from unnest(p_reserved) as r
  )
  on conflict (project_id, ip) do nothing;

  get diagnostics v_count = row_count;

  -- Fresh statistics right away, so the first allocations on a large new
  -- pool do not wait for autovacuum to choose the free-row index.
  if v_count >= 1024 then
    analyze public.nebula_ip_pool;
  end if;

  return v_count;
end
$$;

--
-- Name: FUNCTION populate_nebula_ip_pool(p_project_id uuid, p_cidr cidr, p_reserved inet[]); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.populate_nebula_ip_pool(p_project_id uuid, p_cidr cidr, p_reserved inet[]) IS 'Fills a project''s pool with every usable address of the prefix except reserved ones; returns the rows added.';

--
-- Name: prune_rate_limit_buckets(timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.prune_rate_limit_buckets(p_now timestamp with time zone DEFAULT now()) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_count integer;
begin
  -- A full bucket behaves exactly like a missing one, so deleting it is safe.
  delete from public.rate_limit_buckets b
  where b.full_at <= p_now;

  get diagnostics v_count = row_count;
  return v_count;
end
$$;

--
-- Name: FUNCTION prune_rate_limit_buckets(p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.prune_rate_limit_buckets(p_now timestamp with time zone) IS 'Deletes buckets that have refilled completely by p_now; returns how many.';

--
-- Name: reclaim_idle_devices(timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.reclaim_idle_devices(p_now timestamp with time zone DEFAULT now()) RETURNS TABLE(project_id uuid, device_id uuid, ip inet, last_activity timestamp with time zone, quarantined_until timestamp with time zone, revoked_fingerprints text[])
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_candidate record;
  v_released record;
begin
  for v_candidate in
    select d.project_id, d.id, d.nebula_ip, d.owner_id, d.nebula_last_seen,
      p.device_idle_timeout,
      greatest(d.nebula_last_seen, d.created_at, (
        select max(c.not_before)
        from public.nebula_certificates c
        where c.project_id = d.project_id and c.device_id = d.id
      )) as last_activity
    from public.user_devices d
    join public.projects p on p.id = d.project_id
    where p.device_idle_timeout is not null
      and d.nebula_ip is not null
      and not d.is_lighthouse
      -- A device that holds a lighthouse entry is a lighthouse even if its
      -- flag were wrong.
      and not exists (
        select 1
        from public.nebula_lighthouses l
        where l.project_id = d.project_id and l.device_id = d.id
      )
    order by d.project_id, d.id
    -- Devices being registered or renewed right now are busy, not idle.
    for update of d skip locked
  loop
    if v_candidate.last_activity >= p_now - v_candidate.device_idle_timeout then
      continue;
    end if;

    select r.* into v_released
    from public.release_nebula_ip_by_device(
      v_candidate.project_id, v_candidate.id, p_now, 'reclaimed'
    ) r;

    perform public.append_audit_event(
      p_project_id => v_candidate.project_id,
      p_actor_id => null,
      p_actor_type => 'system',
      p_action => 'device.reclaim',
      p_target_type => 'device',
      p_target_id => v_candidate.id::text,
      p_before => jsonb_build_object(
        'ip', host(v_candidate.nebula_ip),
        'ownerId', v_candidate.owner_id,
        'lastSeen', v_candidate.nebula_last_seen,
        'lastActivity', v_candidate.last_activity,
        'idleTimeoutSeconds', extract(epoch from v_candidate.device_idle_timeout)
      ),
      p_after => jsonb_build_object(
        'ip', null,
        'quarantinedUntil', v_released.quarantined_until,
        'revokedFingerprints', to_jsonb(v_released.revoked_fingerprints)
      ),
      p_now => p_now
    );

    return query select v_candidate.project_id, v_candidate.id, v_candidate.nebula_ip,
      v_candidate.last_activity, v_released.quarantined_until,
      v_released.revoked_fingerprints;
  end loop;
end
$$;

--
-- Name: FUNCTION reclaim_idle_devices(p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.reclaim_idle_devices(p_now timestamp with time zone) IS 'Releases every non-lighthouse device idle longer than its project''s device_idle_timeout: revokes its certificates, quarantines its address until they expire, and writes a device.reclaim audit row.';

--
-- Name: record_device_heartbeat(uuid, uuid, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.record_device_heartbeat(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone DEFAULT now()) RETURNS timestamp with time zone
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_last_seen timestamptz;
begin
  -- greatest(): a late heartbeat from a slow instance never moves time back.
  update public.user_devices d
  set nebula_last_seen = greatest(d.nebula_last_seen, p_now)
  where d.project_id = p_project_id and d.id = p_device_id
  returning d.nebula_last_seen into v_last_seen;

  if not found then
    raise exception 'device % not found in project %', p_device_id, p_project_id
      using errcode = 'VS002',
        hint = 'Register the device before sending heartbeats.';
  end if;

  return v_last_seen;
end
$$;

--
-- Name: FUNCTION record_device_heartbeat(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.record_device_heartbeat(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone) IS 'Sets the device''s nebula_last_seen to p_now unless it is later already; returns the stored value.';

--
-- Name: record_nebula_certificate(text, uuid, uuid, text, inet, text, text[], bytea, timestamp with time zone, timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.record_nebula_certificate(p_fingerprint text, p_project_id uuid, p_device_id uuid, p_ca_fingerprint text, p_ip inet, p_name text, p_groups text[], p_public_key bytea, p_not_before timestamp with time zone, p_not_after timestamp with time zone, p_now timestamp with time zone) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  insert into public.nebula_certificates
    (fingerprint, project_id, device_id, ca_fingerprint, ip, name, groups,
     public_key, not_before, not_after, created_at)
  values (p_fingerprint, p_project_id, p_device_id, p_ca_fingerprint, p_ip, p_name,
    p_groups, p_public_key, p_not_before, p_not_after, p_now)
  on conflict (fingerprint) do nothing;

  -- Equal inputs within one second sign to equal bytes, so the certificate
  -- may exist already: fine, unless it has been revoked since.
  if not found then
    perform 1 from public.nebula_certificates c
    where c.fingerprint = p_fingerprint and c.revoked_at is not null;
    if found then
      raise exception 'certificate % was revoked', p_fingerprint
        using errcode = 'VS207', hint = 'Retry in one second.';
    end if;
  end if;
end
$$;

--
-- Name: FUNCTION record_nebula_certificate(p_fingerprint text, p_project_id uuid, p_device_id uuid, p_ca_fingerprint text, p_ip inet, p_name text, p_groups text[], p_public_key bytea, p_not_before timestamp with time zone, p_not_after timestamp with time zone, p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.record_nebula_certificate(p_fingerprint text, p_project_id uuid, p_device_id uuid, p_ca_fingerprint text, p_ip inet, p_name text, p_groups text[], p_public_key bytea, p_not_before timestamp with time zone, p_not_after timestamp with time zone, p_now timestamp with time zone) IS 'Second half of a registration: stores the signed certificate; raises VS207 when equal bytes were signed and revoked before.';

--
-- Name: register_nebula_device(uuid, uuid, uuid, text, bytea, boolean, inet, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.register_nebula_device(p_project_id uuid, p_device_id uuid, p_user_id uuid, p_name text, p_public_key bytea, p_lighthouse boolean, p_lighthouse_ip inet, p_now timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_project record;
  v_role text;
  v_device record;
  v_created boolean;
  v_ip inet;
  v_lighthouse_ip inet;
  v_cas jsonb;
  v_key record;
  v_newest record;
begin
  select p.id, p.name, p.cidr,
    extract(epoch from p.host_cert_lifetime)::float8 as host_cert_lifetime_seconds
  into v_project
  from public.projects p
  where p.id = p_project_id;

  if not found then
    raise exception 'project % not found', p_project_id using errcode = 'VS003';
  end if;

  select m.role into v_role
  from public.project_members m
  where m.project_id = p_project_id and m.user_id = p_user_id;

  if v_role is null then
    raise exception 'user % is not a member of project %', p_user_id, p_project_id
      using errcode = 'VS201';
  end if;
  if p_lighthouse and v_role not in ('owner', 'admin') then
    raise exception 'a lighthouse needs the owner or admin role'
      using errcode = 'VS202', detail = v_role;
  end if;

  -- Creates the device, or locks the existing row (the update changes
  -- nothing) so that concurrent registrations of one device queue here.
  insert into public.user_devices as d
    (project_id, id, owner_id, name, public_key, created_at, updated_at)
  values (p_project_id, p_device_id, p_user_id, p_name, p_public_key, p_now, p_now)
  on conflict (project_id, id) do update set updated_at = d.updated_at
  returning d.owner_id, d.nebula_ip, d.is_lighthouse, d.public_key
  into v_device;

  if v_device.owner_id <> p_user_id then
    raise exception 'device % belongs to another user', p_device_id
      using errcode = 'VS203';
  end if;
  v_created := v_device.nebula_ip is null;
  if not v_created and v_device.is_lighthouse <> p_lighthouse then
    raise exception 'device % is registered with the other lighthouse role', p_device_id
      using errcode = 'VS204',
        detail = case when v_device.is_lighthouse then 'lighthouse' else 'device' end;
  end if;

  -- Like nebula-renew: a device whose newest certificate was revoked on
  -- request stays out until it is released.
  if not v_created then
    select c.fingerprint, c.revoked_at, c.revocation_reason into v_newest
    from public.nebula_certificates c
    where c.project_id = p_project_id and c.device_id = p_device_id
    order by c.not_before desc, c.created_at desc
    limit 1;
    if v_newest.revoked_at is not null
      and v_newest.revocation_reason <> all (public.nebula_lifecycle_revocation_reasons())
    then
      raise exception 'certificate % of device % is revoked', v_newest.fingerprint, p_device_id
        using errcode = 'VS208', detail = 'device',
          hint = 'Release the device, then register it with a new key pair.';
    end if;
  end if;

  if public.is_nebula_public_key_revoked(p_project_id, p_public_key) then
    raise exception 'a certificate for this public key was revoked in project %', p_project_id
      using errcode = 'VS208', detail = 'public_key',
        hint = 'Generate a new key pair on the device.';
  end if;

  -- Two machines with one key (a cloned disk) would be one Nebula peer.
  perform 1 from public.user_devices d
  where d.project_id = p_project_id and d.public_key = p_public_key
    and d.id <> p_device_id and d.nebula_ip is not null;
  if found then
    raise exception 'another device of project % uses this public key', p_project_id
      using errcode = 'VS205';
  end if;

  -- A known device with a new key: its old key's certificates stop working.
  if v_device.public_key is distinct from p_public_key then
    update public.nebula_certificates c
    set revoked_at = p_now, revocation_reason = 'key_changed'
    where c.project_id = p_project_id and c.device_id = p_device_id
      and c.public_key <> p_public_key and c.revoked_at is null and c.not_after > p_now;
  end if;
  update public.user_devices d
  set public_key = p_public_key, name = p_name, updated_at = p_now
  where d.project_id = p_project_id and d.id = p_device_id;

  if p_lighthouse and p_lighthouse_ip is not null then
    -- A named lighthouse: assign_nebula_lighthouse_ip waits for a
    -- registration that is taking it, then raises VS006 if it committed.
    select l.ip into v_lighthouse_ip
    from public.nebula_lighthouses l
    where l.project_id = p_project_id
      and (l.device_id is null or l.device_id = p_device_id)
      and host(l.ip) = host(p_lighthouse_ip);
  elsif p_lighthouse then
    v_lighthouse_ip := public.lock_free_nebula_lighthouse(p_project_id, p_device_id);
  end if;

  if p_lighthouse then
    if v_lighthouse_ip is null then
      raise exception 'no free lighthouse of project % matches', p_project_id
        using errcode = 'VS206';
    end if;
    v_ip := public.assign_nebula_lighthouse_ip(
      p_project_id, p_device_id, v_lighthouse_ip, p_user_id, p_now);
  else
    v_ip := public.allocate_nebula_ip(p_project_id, p_device_id, p_user_id, p_now);
  end if;

  -- Usable CAs, longest-lived first: the first one signs.
  select coalesce(jsonb_agg(jsonb_build_object(
      'id', c.id, 'fingerprint', c.fingerprint, 'cert_pem', c.cert_pem,
      'not_before', c.not_before, 'not_after', c.not_after)
    order by c.not_after desc, c.fingerprint), '[]'::jsonb)
  into v_cas
  from public.nebula_cas c
  where c.project_id = p_project_id and c.retired_at is null and c.not_after > p_now;

  select c.encrypted_private_key, c.key_nonce into v_key
  from public.nebula_cas c
  where c.project_id = p_project_id and c.retired_at is null and c.not_after > p_now
  order by c.not_after desc, c.fingerprint
  limit 1;

  return jsonb_build_object(
    'project_name', v_project.name,
    'cidr', v_project.cidr::text,
    'host_cert_lifetime_seconds', v_project.host_cert_lifetime_seconds,
    'created', v_created,
    'previous_ip', host(v_device.nebula_ip),
    'ip', host(v_ip),
    'prefix_length', masklen(v_ip),
    'cas', v_cas,
    'signing_key', encode(v_key.encrypted_private_key, 'hex'),
    'signing_key_nonce', encode(v_key.key_nonce, 'hex'),
    'lighthouses', (
      select coalesce(jsonb_agg(jsonb_build_object(
          'ip', host(l.ip), 'endpoints', l.endpoints, 'name', l.name)
        order by l.ip), '[]'::jsonb)
      from public.nebula_lighthouses l
      where l.project_id = p_project_id),
    'blocklist', (
      select coalesce(jsonb_agg(b.fingerprint), '[]'::jsonb)
      from public.get_nebula_blocklist(p_project_id, p_now) as b (fingerprint))
  );
end
$$;

--
-- Name: FUNCTION register_nebula_device(p_project_id uuid, p_device_id uuid, p_user_id uuid, p_name text, p_public_key bytea, p_lighthouse boolean, p_lighthouse_ip inet, p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.register_nebula_device(p_project_id uuid, p_device_id uuid, p_user_id uuid, p_name text, p_public_key bytea, p_lighthouse boolean, p_lighthouse_ip inet, p_now timestamp with time zone) IS 'First half of a registration: role check, device claim, key checks, address; returns the project''s CAs, the sealed signing key, lighthouses and blocklist. Raises VS201-VS206, VS208, VS001, VS003.';

--
-- Name: release_nebula_ip_by_device(uuid, uuid, timestamp with time zone, text); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.release_nebula_ip_by_device(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone DEFAULT now(), p_reason text DEFAULT 'released'::text) RETURNS TABLE(ip inet, quarantined_until timestamp with time zone, revoked_fingerprints text[])
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_device record;
  v_until timestamptz;
  v_revoked text[];
begin
  select d.* into v_device
  from public.user_devices d
  where d.project_id = p_project_id and d.id = p_device_id
  for update;

  if not found then
    raise exception 'device % not found in project %', p_device_id, p_project_id
      using errcode = 'VS002';
  end if;

  -- Every unexpired certificate of the device goes on the blocklist.
  with revoked as (
    update public.nebula_certificates c
    set revoked_at = p_now, revocation_reason = p_reason
    where c.project_id = p_project_id
      and c.device_id = p_device_id
      and c.revoked_at is null
      and c.not_after > p_now
    returning c.fingerprint
  )
  select coalesce(array_agg(r.fingerprint order by r.fingerprint), '{}')
  into v_revoked
  from revoked r;

  if v_device.nebula_ip is null then
    return query select null::inet, null::timestamptz, v_revoked;
    return;
  end if;

  -- Certificates of any earlier holder count too: the address is reusable
  -- only when no valid certificate names it.
  select max(c.not_after) into v_until
  from public.nebula_certificates c
  where c.project_id = p_project_id
    and host(c.ip) = host(v_device.nebula_ip)
    and c.not_after > p_now;

  if v_device.is_lighthouse then
    update public.nebula_lighthouses l
    set device_id = null
    where l.project_id = p_project_id and l.device_id = p_device_id;
  else
    update public.nebula_ip_pool p
    set device_id = null, allocated_at = null, quarantined_until = v_until
    where p.project_id = p_project_id and p.device_id = p_device_id;
  end if;

  update public.user_devices d
  set nebula_ip = null, is_lighthouse = false, updated_at = p_now
  where d.project_id = p_project_id and d.id = p_device_id;

  -- p_now may be earlier than the allocation when the caller read its clock
  -- before a registration that locked the device first had committed, or on
  -- another machine with a clock behind this one.
  update public.nebula_ip_allocations a
  set released_at = greatest(p_now, a.allocated_at)
  where a.project_id = p_project_id
    and a.device_id = p_device_id
    and a.released_at is null;

  return query select v_device.nebula_ip, v_until, v_revoked;
end
$$;

--
-- Name: FUNCTION release_nebula_ip_by_device(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone, p_reason text); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.release_nebula_ip_by_device(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone, p_reason text) IS 'Frees a device''s address, revokes its unexpired certificates and quarantines the address until they expire.';

--
-- Name: revoke_nebula_certificate(uuid, text, text, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.revoke_nebula_certificate(p_project_id uuid, p_fingerprint text, p_reason text, p_now timestamp with time zone DEFAULT now()) RETURNS TABLE(fingerprint text, device_id uuid, revoked_at timestamp with time zone, not_after timestamp with time zone, newly_revoked boolean, previous_reason text)
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_target record;
  v_cert public.nebula_certificates;
begin
  select c.device_id, c.public_key into v_target
  from public.nebula_certificates c
  where c.project_id = p_project_id and c.fingerprint = lower(p_fingerprint);

  if not found then
    raise exception 'certificate % not found in project %', p_fingerprint, p_project_id
      using errcode = 'VS121',
        hint = 'Give the lowercase hex SHA-256 fingerprint of a certificate of this project.';
  end if;

  perform public.lock_nebula_key_devices(p_project_id, array[v_target.public_key]);

  select c.* into v_cert
  from public.nebula_certificates c
  where c.fingerprint = lower(p_fingerprint)
  for update;

  -- The requested certificate comes first. A certificate revoked on request
  -- before keeps its first time and reason and has newly_revoked false.
  return query
  with changed as (
    update public.nebula_certificates c
    set revoked_at = coalesce(c.revoked_at, p_now), revocation_reason = p_reason
    from public.nebula_certificates previous
    where previous.fingerprint = c.fingerprint
      and c.project_id = p_project_id
      and c.public_key = v_cert.public_key
      and (c.revoked_at is null
        or (c.fingerprint = v_cert.fingerprint
          and c.revocation_reason = any (public.nebula_lifecycle_revocation_reasons())))
    returning c.fingerprint, c.device_id, c.revoked_at, c.not_after,
      previous.revocation_reason as previous_reason
  ),
  result as (
    select ch.fingerprint, ch.device_id, ch.revoked_at, ch.not_after,
      true as newly_revoked, ch.previous_reason
    from changed ch
    union all
    select v_cert.fingerprint, v_cert.device_id, v_cert.revoked_at, v_cert.not_after,
      false, v_cert.revocation_reason
    where not exists (select 1 from changed ch where ch.fingerprint = v_cert.fingerprint)
  )
  select r.fingerprint, r.device_id, r.revoked_at, r.not_after, r.newly_revoked,
    r.previous_reason
  from result r
  order by r.fingerprint <> v_cert.fingerprint, r.fingerprint;
end
$$;

--
-- Name: FUNCTION revoke_nebula_certificate(p_project_id uuid, p_fingerprint text, p_reason text, p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.revoke_nebula_certificate(p_project_id uuid, p_fingerprint text, p_reason text, p_now timestamp with time zone) IS 'Revokes one certificate on request, and every other unrevoked certificate of its public key in the project; replaces a lifecycle reason. Returns the requested certificate first, then the others it changed. Raises VS121.';

--
-- Name: revoke_nebula_device_certificates(uuid, uuid, text, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.revoke_nebula_device_certificates(p_project_id uuid, p_device_id uuid, p_reason text, p_now timestamp with time zone DEFAULT now()) RETURNS TABLE(fingerprint text, device_id uuid, revoked_at timestamp with time zone, not_after timestamp with time zone, previous_reason text)
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_keys bytea[];
begin
  select array_agg(distinct k.public_key) into v_keys
  from (
    select d.public_key
    from public.user_devices d
    where d.project_id = p_project_id and d.id = p_device_id
    union all
    select c.public_key
    from public.nebula_certificates c
    where c.project_id = p_project_id and c.device_id = p_device_id
  ) k;

  perform public.lock_nebula_key_devices(p_project_id, v_keys);
  -- Locks the device when it has neither a key nor a certificate.
  perform 1 from public.user_devices d
  where d.project_id = p_project_id and d.id = p_device_id
  for update;
  if not found then
    raise exception 'device % not found in project %', p_device_id, p_project_id
      using errcode = 'VS122';
  end if;

  -- Every certificate of the device, expired ones included, and the
  -- unrevoked certificates of its keys on other devices.
  return query
  with changed as (
    update public.nebula_certificates c
    set revoked_at = coalesce(c.revoked_at, p_now), revocation_reason = p_reason
    from public.nebula_certificates previous
    where previous.fingerprint = c.fingerprint
      and c.project_id = p_project_id
      and (c.revoked_at is null
        or (c.device_id = p_device_id
          and c.revocation_reason = any (public.nebula_lifecycle_revocation_reasons())))
      and (c.device_id = p_device_id or c.public_key = any (v_keys))
    returning c.fingerprint, c.device_id, c.revoked_at, c.not_after,
      previous.revocation_reason as previous_reason
  )
  select ch.fingerprint, ch.device_id, ch.revoked_at, ch.not_after, ch.previous_reason
  from changed ch
  order by ch.fingerprint;
end
$$;

--
-- Name: FUNCTION revoke_nebula_device_certificates(p_project_id uuid, p_device_id uuid, p_reason text, p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.revoke_nebula_device_certificates(p_project_id uuid, p_device_id uuid, p_reason text, p_now timestamp with time zone) IS 'Revokes on request every certificate of a device, expired ones included, and the unrevoked certificates of its public keys on other devices; replaces lifecycle reasons. Raises VS122.';

--
-- Name: take_rate_limit_token(text, text, text, uuid, integer, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.take_rate_limit_token(p_scope text, p_key text, p_endpoint text, p_project_id uuid DEFAULT NULL::uuid, p_cost integer DEFAULT 1, p_now timestamp with time zone DEFAULT now()) RETURNS TABLE(allowed boolean, remaining integer, retry_after_seconds integer, capacity integer)
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_policy public.rate_limit_policies;
  v_ctid tid;
  v_updated_at timestamptz;
  v_tokens numeric;
  v_allowed boolean;
  v_retry integer := 0;
begin
  if p_scope is null or p_scope not in ('user', 'device', 'ip')
    or coalesce(p_key, '') = '' or coalesce(p_endpoint, '') = ''
    or p_cost is null or p_cost < 1
  then
    raise exception 'invalid rate limit request: scope %, key %, endpoint %, cost %',
      p_scope, p_key, p_endpoint, p_cost
      using errcode = 'VS111',
        hint = 'scope is user, device or ip; key and endpoint are non-empty; cost is at least 1.';
  end if;

  -- The same choice as find_rate_limit_policy: project before default,
  -- endpoint before '*'.
  select r.* into v_policy
  from public.rate_limit_policies r
  where r.scope = p_scope
    and (r.project_id = p_project_id or r.project_id is null)
    and r.endpoint in (p_endpoint, '*')
  order by r.project_id is null, r.endpoint = '*'
  limit 1;

  if v_policy.id is null then
    raise exception 'no rate limit policy for scope % and endpoint %', p_scope, p_endpoint
      using errcode = 'VS112',
        hint = 'Insert a default row (project_id null, endpoint ''*'') into public.rate_limit_policies.';
  end if;

  if p_cost > v_policy.capacity then
    raise exception 'cost % exceeds the bucket capacity %', p_cost, v_policy.capacity
      using errcode = 'VS111',
        hint = 'A request may cost at most the capacity of its bucket.';
  end if;

  -- The row lock makes refill-and-take atomic across every connection: a
  -- second taker waits here and then sees the first one's update. The loop
  -- runs twice only when another connection creates the bucket in between.
  loop
    if p_project_id is null then
      select b.ctid, b.tokens, b.updated_at into v_ctid, v_tokens, v_updated_at
      from public.rate_limit_buckets b
      where b.project_id is null and b.scope = p_scope
        and b.endpoint = p_endpoint and b.bucket_key = p_key
      for update;
    else
      select b.ctid, b.tokens, b.updated_at into v_ctid, v_tokens, v_updated_at
      from public.rate_limit_buckets b
      where b.project_id = p_project_id and b.scope = p_scope
        and b.endpoint = p_endpoint and b.bucket_key = p_key
      for update;
    end if;
    exit when v_ctid is not null;

    -- A missing bucket is a full one: store it with this take done.
    insert into public.rate_limit_buckets
      (project_id, scope, endpoint, bucket_key, tokens, updated_at, full_at)
    values (p_project_id, p_scope, p_endpoint, p_key, v_policy.capacity - p_cost, p_now,
      p_now + make_interval(secs => (p_cost / v_policy.refill_per_second)::double precision))
    on conflict (project_id, scope, endpoint, bucket_key) do nothing;

    if found then
      return query select true, v_policy.capacity - p_cost, 0, v_policy.capacity;
      return;
    end if;
  end loop;

  -- A clock that goes backwards (another instance, a test) adds nothing.
  v_tokens := least(
    v_policy.capacity::numeric,
    v_tokens + greatest(extract(epoch from p_now - v_updated_at), 0) * v_policy.refill_per_second
  );
  v_allowed := v_tokens >= p_cost;

  if v_allowed then
    v_tokens := v_tokens - p_cost;
  else
    v_retry := ceil((p_cost - v_tokens) / v_policy.refill_per_second)::integer;
  end if;

  update public.rate_limit_buckets b
  set tokens = v_tokens,
    updated_at = greatest(v_updated_at, p_now),
    full_at = greatest(v_updated_at, p_now)
      + make_interval(secs => ((v_policy.capacity - v_tokens) / v_policy.refill_per_second)::double precision)
  where b.ctid = v_ctid;

  return query select v_allowed, floor(v_tokens)::integer, v_retry, v_policy.capacity;
end
$$;

--
-- Name: FUNCTION take_rate_limit_token(p_scope text, p_key text, p_endpoint text, p_project_id uuid, p_cost integer, p_now timestamp with time zone); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.take_rate_limit_token(p_scope text, p_key text, p_endpoint text, p_project_id uuid, p_cost integer, p_now timestamp with time zone) IS 'Refills the bucket for the time since its last use and takes p_cost tokens if it holds them; returns whether it did and, if not, the seconds until it would.';

--
-- Name: verify_audit_chain(uuid); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.verify_audit_chain(p_project_id uuid) RETURNS TABLE(ok boolean, checked bigint, broken_id bigint, broken_seq bigint, reason text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_row public.audit_log;
  v_expected_seq bigint := 1;
  v_prev_hash bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
  v_head public.audit_log_heads;
begin
  if auth.role() = 'authenticated' and not public.is_project_admin(p_project_id) then
    raise exception 'only owners and admins of project % may verify its audit log',
      p_project_id
      using errcode = '42501';
  end if;

  for v_row in
    select a.*
    from public.audit_log a
    where a.project_id is not distinct from p_project_id
    order by a.seq
  loop
    if v_row.seq <> v_expected_seq then
      return query select false, v_expected_seq - 1, v_row.id, v_row.seq,
        format('sequence gap: expected %s, found %s', v_expected_seq, v_row.seq);
      return;
    end if;
    if v_row.prev_hash <> v_prev_hash then
      return query select false, v_expected_seq - 1, v_row.id, v_row.seq,
        'prev_hash does not match the previous row''s hash'::text;
      return;
    end if;
    if v_row.hash <> public.audit_log_row_hash(v_prev_hash, v_row) then
      return query select false, v_expected_seq - 1, v_row.id, v_row.seq,
        'hash does not match the row content'::text;
      return;
    end if;
    v_prev_hash := v_row.hash;
    v_expected_seq := v_expected_seq + 1;
  end loop;

  -- Deleting the newest rows leaves a shorter chain that is consistent in
  -- itself; the head remembers how long the chain was.
  select h.* into v_head
  from public.audit_log_heads h
  where h.chain_key = public.audit_log_chain_key(p_project_id);

  if coalesce(v_head.seq, 0) <> v_expected_seq - 1
    or coalesce(v_head.hash, v_prev_hash) <> v_prev_hash
  then
    return query select false, v_expected_seq - 1, null::bigint, v_head.seq,
      format('chain ends at seq %s but its head records seq %s',
        v_expected_seq - 1, v_head.seq);
    return;
  end if;

  return query select true, v_expected_seq - 1, null::bigint, null::bigint, null::text;
end
$$;

--
-- Name: FUNCTION verify_audit_chain(p_project_id uuid); Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON FUNCTION public.verify_audit_chain(p_project_id uuid) IS 'Recomputes a project''s audit chain; returns ok, or the first row whose sequence, prev_hash or hash is wrong.';

--
-- Name: audit_log_heads; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.audit_log_heads (
    chain_key uuid NOT NULL,
    seq bigint NOT NULL,
    hash bytea NOT NULL,
    CONSTRAINT audit_log_heads_hash_length CHECK ((octet_length(hash) = 32))
);

--
-- Name: TABLE audit_log_heads; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.audit_log_heads IS 'Sequence number and hash of the latest audit_log row per project chain (nil uuid for events without project).';

--
-- Name: audit_log_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.audit_log ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: nebula_cas; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.nebula_cas (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    project_id uuid NOT NULL,
    cert_pem text NOT NULL,
    fingerprint text NOT NULL,
    not_before timestamp with time zone NOT NULL,
    not_after timestamp with time zone NOT NULL,
    encrypted_private_key bytea NOT NULL,
    key_nonce bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    retired_at timestamp with time zone,
    CONSTRAINT nebula_cas_fingerprint_hex CHECK ((fingerprint ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT nebula_cas_key_nonce_length CHECK ((octet_length(key_nonce) = 12)),
    CONSTRAINT nebula_cas_validity_order CHECK ((not_before < not_after))
);

--
-- Name: TABLE nebula_cas; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.nebula_cas IS 'Nebula CAs of a project; several may be valid at once while one is rotated out.';

--
-- Name: COLUMN nebula_cas.fingerprint; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.nebula_cas.fingerprint IS 'Lowercase hex SHA-256 of the CA certificate, as Nebula prints it.';

--
-- Name: COLUMN nebula_cas.encrypted_private_key; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.nebula_cas.encrypted_private_key IS 'CA private key sealed with AES-256-GCM under the key-encryption key; the project id is the additional data.';

--
-- Name: nebula_certificates; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.nebula_certificates (
    fingerprint text NOT NULL,
    project_id uuid NOT NULL,
    device_id uuid NOT NULL,
    ca_fingerprint text NOT NULL,
    ip inet NOT NULL,
    name text NOT NULL,
    groups text[] DEFAULT '{}'::text[] NOT NULL,
    public_key bytea NOT NULL,
    not_before timestamp with time zone NOT NULL,
    not_after timestamp with time zone NOT NULL,
    revoked_at timestamp with time zone,
    revocation_reason text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT nebula_certificates_fingerprint_hex CHECK ((fingerprint ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT nebula_certificates_revocation_reason CHECK (((revoked_at IS NULL) = (revocation_reason IS NULL))),
    CONSTRAINT nebula_certificates_validity_order CHECK ((not_before < not_after))
);

--
-- Name: TABLE nebula_certificates; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.nebula_certificates IS 'Every host certificate signed for a device; revoked ones go on the project blocklist until they expire.';

--
-- Name: COLUMN nebula_certificates.fingerprint; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.nebula_certificates.fingerprint IS 'Lowercase hex SHA-256 of the whole certificate, the form pki.blocklist matches.';

--
-- Name: nebula_ip_allocations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.nebula_ip_allocations (
    id bigint NOT NULL,
    project_id uuid NOT NULL,
    ip inet NOT NULL,
    device_id uuid NOT NULL,
    allocated_by uuid,
    allocated_at timestamp with time zone NOT NULL,
    released_at timestamp with time zone,
    CONSTRAINT nebula_ip_allocations_release_order CHECK (((released_at IS NULL) OR (released_at >= allocated_at)))
);

--
-- Name: TABLE nebula_ip_allocations; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.nebula_ip_allocations IS 'Append-only history of allocations; release only fills released_at.';

--
-- Name: nebula_ip_allocations_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.nebula_ip_allocations ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.nebula_ip_allocations_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: nebula_ip_pool; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.nebula_ip_pool (
    project_id uuid NOT NULL,
    ip inet NOT NULL,
    device_id uuid,
    allocated_at timestamp with time zone,
    quarantined_until timestamp with time zone,
    CONSTRAINT nebula_ip_pool_allocated_consistent CHECK (((device_id IS NULL) = (allocated_at IS NULL))),
    CONSTRAINT nebula_ip_pool_free_when_quarantined CHECK (((quarantined_until IS NULL) OR (device_id IS NULL)))
);

--
-- Name: TABLE nebula_ip_pool; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.nebula_ip_pool IS 'One row per usable address of a project; never the network, broadcast or a lighthouse address.';

--
-- Name: COLUMN nebula_ip_pool.quarantined_until; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.nebula_ip_pool.quarantined_until IS 'A released address stays out of allocation until every certificate issued for it has expired.';

--
-- Name: nebula_lighthouses; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.nebula_lighthouses (
    project_id uuid NOT NULL,
    ip inet NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    endpoints text[] NOT NULL,
    device_id uuid,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT nebula_lighthouses_endpoints_present CHECK ((cardinality(endpoints) >= 1))
);

--
-- Name: TABLE nebula_lighthouses; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.nebula_lighthouses IS 'Lighthouses of a project: a reserved overlay address and public host:port endpoints.';

--
-- Name: COLUMN nebula_lighthouses.device_id; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.nebula_lighthouses.device_id IS 'Device that registered as this lighthouse, if any.';

--
-- Name: project_members; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.project_members (
    project_id uuid NOT NULL,
    user_id uuid NOT NULL,
    role text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT project_members_role_valid CHECK ((role = ANY (ARRAY['owner'::text, 'admin'::text, 'member'::text])))
);

--
-- Name: TABLE project_members; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.project_members IS 'Who may use a project: owners and admins manage it, members enroll devices.';

--
-- Name: projects; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.projects (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    cidr cidr NOT NULL,
    created_by uuid NOT NULL,
    host_cert_lifetime interval DEFAULT '30 days'::interval NOT NULL,
    ca_lifetime interval DEFAULT '730 days'::interval NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    device_idle_timeout interval DEFAULT '90 days'::interval,
    CONSTRAINT projects_ca_lifetime_positive CHECK ((ca_lifetime > '00:00:00'::interval)),
    CONSTRAINT projects_cidr_ipv4 CHECK ((family((cidr)::inet) = 4)),
    CONSTRAINT projects_cidr_prefix CHECK (((masklen((cidr)::inet) >= 8) AND (masklen((cidr)::inet) <= 30))),
    CONSTRAINT projects_device_idle_timeout_positive CHECK (((device_idle_timeout IS NULL) OR (device_idle_timeout > '00:00:00'::interval))),
    CONSTRAINT projects_host_cert_lifetime_positive CHECK ((host_cert_lifetime > '00:00:00'::interval)),
    CONSTRAINT projects_name_length CHECK (((char_length(name) >= 1) AND (char_length(name) <= 200)))
);

--
-- Name: TABLE projects; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.projects IS 'A video project and its Nebula overlay network (one CA, one address pool).';

--
-- Name: COLUMN projects.cidr; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.projects.cidr IS 'Overlay network of the project, IPv4 /8 to /30; the CA is constrained to it.';

--
-- Name: COLUMN projects.host_cert_lifetime; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.projects.host_cert_lifetime IS 'Lifetime of host certificates, capped by the CA''s remaining validity.';

--
-- Name: COLUMN projects.ca_lifetime; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.projects.ca_lifetime IS 'Lifetime of the project CA; when it ends, every certificate it signed stops working.';

--
-- Name: COLUMN projects.device_idle_timeout; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.projects.device_idle_timeout IS 'A device without heartbeat or new certificate for this long is reclaimed; null turns reclaim off. Lighthouses are never reclaimed.';

--
-- Name: rate_limit_buckets; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.rate_limit_buckets (
    project_id uuid,
    scope text NOT NULL,
    endpoint text NOT NULL,
    bucket_key text NOT NULL,
    tokens numeric NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    full_at timestamp with time zone NOT NULL,
    CONSTRAINT rate_limit_buckets_tokens_nonnegative CHECK ((tokens >= (0)::numeric))
);

--
-- Name: TABLE rate_limit_buckets; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.rate_limit_buckets IS 'Token count per (project, scope, endpoint, key) as of updated_at; a missing row is a full bucket.';

--
-- Name: COLUMN rate_limit_buckets.full_at; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.rate_limit_buckets.full_at IS 'When the bucket is full again without takers; from then on the row can be deleted.';

--
-- Name: rate_limit_policies_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.rate_limit_policies ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.rate_limit_policies_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

--
-- Name: user_devices; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.user_devices (
    project_id uuid NOT NULL,
    id uuid NOT NULL,
    owner_id uuid NOT NULL,
    name text NOT NULL,
    public_key bytea,
    nebula_ip inet,
    is_lighthouse boolean DEFAULT false NOT NULL,
    nebula_last_seen timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT user_devices_name_length CHECK (((char_length(name) >= 1) AND (char_length(name) <= 200))),
    CONSTRAINT user_devices_public_key_length CHECK (((public_key IS NULL) OR (octet_length(public_key) = 32)))
);

--
-- Name: TABLE user_devices; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON TABLE public.user_devices IS 'One row per device enrolled in a project, owned by the user who registered it.';

--
-- Name: COLUMN user_devices.public_key; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.user_devices.public_key IS 'X25519 public key of the device''s current certificate (32 bytes).';

--
-- Name: COLUMN user_devices.nebula_ip; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON COLUMN public.user_devices.nebula_ip IS 'Current overlay address with the pool prefix, or null when released.';

--
-- Name: audit_log audit_log_chain_seq_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_chain_seq_unique UNIQUE NULLS NOT DISTINCT (project_id, seq);

--
-- Name: audit_log_heads audit_log_heads_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_log_heads
    ADD CONSTRAINT audit_log_heads_pkey PRIMARY KEY (chain_key);

--
-- Name: audit_log audit_log_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id);

--
-- Name: nebula_cas nebula_cas_fingerprint_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_cas
    ADD CONSTRAINT nebula_cas_fingerprint_unique UNIQUE (fingerprint);

--
-- Name: nebula_cas nebula_cas_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_cas
    ADD CONSTRAINT nebula_cas_pkey PRIMARY KEY (id);

--
-- Name: nebula_certificates nebula_certificates_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_certificates
    ADD CONSTRAINT nebula_certificates_pkey PRIMARY KEY (fingerprint);

--
-- Name: nebula_ip_allocations nebula_ip_allocations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_ip_allocations
    ADD CONSTRAINT nebula_ip_allocations_pkey PRIMARY KEY (id);

--
-- Name: nebula_ip_pool nebula_ip_pool_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_ip_pool
    ADD CONSTRAINT nebula_ip_pool_pkey PRIMARY KEY (project_id, ip);

--
-- Name: nebula_lighthouses nebula_lighthouses_device_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_lighthouses
    ADD CONSTRAINT nebula_lighthouses_device_unique UNIQUE (project_id, device_id);

--
-- Name: nebula_lighthouses nebula_lighthouses_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_lighthouses
    ADD CONSTRAINT nebula_lighthouses_pkey PRIMARY KEY (project_id, ip);

--
-- Name: project_members project_members_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.project_members
    ADD CONSTRAINT project_members_pkey PRIMARY KEY (project_id, user_id);

--
-- Name: projects projects_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.projects
    ADD CONSTRAINT projects_pkey PRIMARY KEY (id);

--
-- Name: rate_limit_buckets rate_limit_buckets_key_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.rate_limit_buckets
    ADD CONSTRAINT rate_limit_buckets_key_unique UNIQUE NULLS NOT DISTINCT (project_id, scope, endpoint, bucket_key);

--
-- Name: rate_limit_policies rate_limit_policies_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.rate_limit_policies
    ADD CONSTRAINT rate_limit_policies_pkey PRIMARY KEY (id);

--
-- Name: rate_limit_policies rate_limit_policies_target_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.rate_limit_policies
    ADD CONSTRAINT rate_limit_policies_target_unique UNIQUE NULLS NOT DISTINCT (project_id, scope, endpoint);

--
-- Name: user_devices user_devices_nebula_ip_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.user_devices
    ADD CONSTRAINT user_devices_nebula_ip_unique UNIQUE (project_id, nebula_ip);

--
-- Name: user_devices user_devices_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.user_devices
    ADD CONSTRAINT user_devices_pkey PRIMARY KEY (project_id, id);

--
-- Name: audit_log_project_occurred_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX audit_log_project_occurred_idx ON public.audit_log USING btree (project_id, occurred_at);

--
-- Name: nebula_cas_project_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX nebula_cas_project_id_idx ON public.nebula_cas USING btree (project_id);

--
-- Name: nebula_certificates_device_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX nebula_certificates_device_idx ON public.nebula_certificates USING btree (project_id, device_id);

--
-- Name: nebula_certificates_project_ip_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX nebula_certificates_project_ip_idx ON public.nebula_certificates USING btree (project_id, ip, not_after);

--
-- Name: nebula_certificates_revoked_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX nebula_certificates_revoked_idx ON public.nebula_certificates USING btree (project_id, not_after) WHERE (revoked_at IS NOT NULL);

--
-- Name: INDEX nebula_certificates_revoked_idx; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON INDEX public.nebula_certificates_revoked_idx IS 'Revoked certificates by project and expiry: the rows of pki.blocklist.';

--
-- Name: nebula_ip_allocations_open_device_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX nebula_ip_allocations_open_device_idx ON public.nebula_ip_allocations USING btree (project_id, device_id) WHERE (released_at IS NULL);

--
-- Name: nebula_ip_pool_device_unique; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX nebula_ip_pool_device_unique ON public.nebula_ip_pool USING btree (project_id, device_id) WHERE (device_id IS NOT NULL);

--
-- Name: INDEX nebula_ip_pool_device_unique; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON INDEX public.nebula_ip_pool_device_unique IS 'One address per device: no two allocated rows name the same device.';

--
-- Name: nebula_ip_pool_free_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX nebula_ip_pool_free_idx ON public.nebula_ip_pool USING btree (project_id, ip) WHERE (device_id IS NULL);

--
-- Name: project_members_user_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX project_members_user_id_idx ON public.project_members USING btree (user_id);

--
-- Name: rate_limit_buckets_full_at_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX rate_limit_buckets_full_at_idx ON public.rate_limit_buckets USING btree (full_at);

--
-- Name: user_devices_last_seen_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX user_devices_last_seen_idx ON public.user_devices USING btree (project_id, nebula_last_seen);

--
-- Name: user_devices_owner_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX user_devices_owner_id_idx ON public.user_devices USING btree (owner_id);

--
-- Name: user_devices_public_key_active_unique; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX user_devices_public_key_active_unique ON public.user_devices USING btree (project_id, public_key) WHERE (nebula_ip IS NOT NULL);

--
-- Name: INDEX user_devices_public_key_active_unique; Type: COMMENT; Schema: public; Owner: -
--

COMMENT ON INDEX public.user_devices_public_key_active_unique IS 'A public key belongs to at most one device holding an address in a project.';

--
-- Name: audit_log audit_log_no_truncate; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON public.audit_log FOR EACH STATEMENT EXECUTE FUNCTION public.audit_log_refuse_change();

--
-- Name: audit_log audit_log_no_update_delete; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER audit_log_no_update_delete BEFORE DELETE OR UPDATE ON public.audit_log FOR EACH ROW EXECUTE FUNCTION public.audit_log_refuse_change();

--
-- Name: nebula_ip_allocations nebula_ip_allocations_append_only; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER nebula_ip_allocations_append_only BEFORE DELETE OR UPDATE ON public.nebula_ip_allocations FOR EACH ROW EXECUTE FUNCTION public.nebula_ip_allocations_guard();

--
-- Name: nebula_cas nebula_cas_project_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_cas
    ADD CONSTRAINT nebula_cas_project_id_fkey FOREIGN KEY (project_id) REFERENCES public.projects(id) ON DELETE CASCADE;

--
-- Name: nebula_certificates nebula_certificates_ca_fingerprint_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_certificates
    ADD CONSTRAINT nebula_certificates_ca_fingerprint_fkey FOREIGN KEY (ca_fingerprint) REFERENCES public.nebula_cas(fingerprint);

--
-- Name: nebula_certificates nebula_certificates_device_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_certificates
    ADD CONSTRAINT nebula_certificates_device_fkey FOREIGN KEY (project_id, device_id) REFERENCES public.user_devices(project_id, id) ON DELETE CASCADE;

--
-- Name: nebula_ip_allocations nebula_ip_allocations_project_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_ip_allocations
    ADD CONSTRAINT nebula_ip_allocations_project_id_fkey FOREIGN KEY (project_id) REFERENCES public.projects(id) ON DELETE CASCADE;

--
-- Name: nebula_ip_pool nebula_ip_pool_device_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_ip_pool
    ADD CONSTRAINT nebula_ip_pool_device_fkey FOREIGN KEY (project_id, device_id) REFERENCES public.user_devices(project_id, id);

--
-- Name: nebula_ip_pool nebula_ip_pool_project_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_ip_pool
    ADD CONSTRAINT nebula_ip_pool_project_id_fkey FOREIGN KEY (project_id) REFERENCES public.projects(id) ON DELETE CASCADE;

--
-- Name: nebula_lighthouses nebula_lighthouses_project_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.nebula_lighthouses
    ADD CONSTRAINT nebula_lighthouses_project_id_fkey FOREIGN KEY (project_id) REFERENCES public.projects(id) ON DELETE CASCADE;

--
-- Name: project_members project_members_project_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.project_members
    ADD CONSTRAINT project_members_project_id_fkey FOREIGN KEY (project_id) REFERENCES public.projects(id) ON DELETE CASCADE;

--
-- Name: project_members project_members_user_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.project_members
    ADD CONSTRAINT project_members_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: projects projects_created_by_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.projects
    ADD CONSTRAINT projects_created_by_fkey FOREIGN KEY (created_by) REFERENCES auth.users(id);

--
-- Name: rate_limit_policies rate_limit_policies_project_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.rate_limit_policies
    ADD CONSTRAINT rate_limit_policies_project_id_fkey FOREIGN KEY (project_id) REFERENCES public.projects(id) ON DELETE CASCADE;

--
-- Name: user_devices user_devices_owner_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.user_devices
    ADD CONSTRAINT user_devices_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES auth.users(id) ON DELETE CASCADE;

--
-- Name: user_devices user_devices_project_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.user_devices
    ADD CONSTRAINT user_devices_project_id_fkey FOREIGN KEY (project_id) REFERENCES public.projects(id) ON DELETE CASCADE;

--
-- Name: audit_log; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.audit_log ENABLE ROW LEVEL SECURITY;

--
-- Name: audit_log audit_log_admin_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY audit_log_admin_read ON public.audit_log FOR SELECT TO authenticated USING (public.is_project_admin(project_id));

--
-- Name: audit_log_heads; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.audit_log_heads ENABLE ROW LEVEL SECURITY;

--
-- Name: nebula_cas; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.nebula_cas ENABLE ROW LEVEL SECURITY;

--
-- Name: nebula_cas nebula_cas_member_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY nebula_cas_member_read ON public.nebula_cas FOR SELECT TO authenticated USING (public.is_project_member(project_id));

--
-- Name: nebula_certificates; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.nebula_certificates ENABLE ROW LEVEL SECURITY;

--
-- Name: nebula_certificates nebula_certificates_member_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY nebula_certificates_member_read ON public.nebula_certificates FOR SELECT TO authenticated USING (public.is_project_member(project_id));

--
-- Name: nebula_ip_allocations; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.nebula_ip_allocations ENABLE ROW LEVEL SECURITY;

--
-- Name: nebula_ip_allocations nebula_ip_allocations_member_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY nebula_ip_allocations_member_read ON public.nebula_ip_allocations FOR SELECT TO authenticated USING (public.is_project_member(project_id));

--
-- Name: nebula_ip_pool; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.nebula_ip_pool ENABLE ROW LEVEL SECURITY;

--
-- Name: nebula_ip_pool nebula_ip_pool_member_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY nebula_ip_pool_member_read ON public.nebula_ip_pool FOR SELECT TO authenticated USING (public.is_project_member(project_id));

--
-- Name: nebula_lighthouses; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.nebula_lighthouses ENABLE ROW LEVEL SECURITY;

--
-- Name: nebula_lighthouses nebula_lighthouses_member_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY nebula_lighthouses_member_read ON public.nebula_lighthouses FOR SELECT TO authenticated USING (public.is_project_member(project_id));

--
-- Name: project_members; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.project_members ENABLE ROW LEVEL SECURITY;

--
-- Name: project_members project_members_member_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY project_members_member_read ON public.project_members FOR SELECT TO authenticated USING (public.is_project_member(project_id));

--
-- Name: projects; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.projects ENABLE ROW LEVEL SECURITY;

--
-- Name: projects projects_member_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY projects_member_read ON public.projects FOR SELECT TO authenticated USING (public.is_project_member(id));

--
-- Name: rate_limit_buckets; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.rate_limit_buckets ENABLE ROW LEVEL SECURITY;

--
-- Name: rate_limit_policies; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.rate_limit_policies ENABLE ROW LEVEL SECURITY;

--
-- Name: rate_limit_policies rate_limit_policies_admin_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY rate_limit_policies_admin_read ON public.rate_limit_policies FOR SELECT TO authenticated USING (public.is_project_admin(project_id));

--
-- Name: user_devices; Type: ROW SECURITY; Schema: public; Owner: -
--

ALTER TABLE public.user_devices ENABLE ROW LEVEL SECURITY;

--
-- Name: user_devices user_devices_member_read; Type: POLICY; Schema: public; Owner: -
--

CREATE POLICY user_devices_member_read ON public.user_devices FOR SELECT TO authenticated USING (public.is_project_member(project_id));

--
-- Name: SCHEMA public; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA public TO anon;
GRANT USAGE ON SCHEMA public TO authenticated;
GRANT USAGE ON SCHEMA public TO service_role;

--
-- Name: FUNCTION allocate_nebula_ip(p_project_id uuid, p_device_id uuid, p_allocated_by uuid, p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.allocate_nebula_ip(p_project_id uuid, p_device_id uuid, p_allocated_by uuid, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.allocate_nebula_ip(p_project_id uuid, p_device_id uuid, p_allocated_by uuid, p_now timestamp with time zone) TO service_role;

--
-- Name: TABLE audit_log; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.audit_log TO authenticated;
GRANT SELECT ON TABLE public.audit_log TO service_role;

--
-- Name: FUNCTION append_audit_event(p_project_id uuid, p_actor_id uuid, p_actor_type text, p_action text, p_target_type text, p_target_id text, p_outcome text, p_error_code text, p_before jsonb, p_after jsonb, p_client_ip inet, p_user_agent text, p_request_id text, p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.append_audit_event(p_project_id uuid, p_actor_id uuid, p_actor_type text, p_action text, p_target_type text, p_target_id text, p_outcome text, p_error_code text, p_before jsonb, p_after jsonb, p_client_ip inet, p_user_agent text, p_request_id text, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.append_audit_event(p_project_id uuid, p_actor_id uuid, p_actor_type text, p_action text, p_target_type text, p_target_id text, p_outcome text, p_error_code text, p_before jsonb, p_after jsonb, p_client_ip inet, p_user_agent text, p_request_id text, p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION assign_nebula_lighthouse_ip(p_project_id uuid, p_device_id uuid, p_ip inet, p_allocated_by uuid, p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.assign_nebula_lighthouse_ip(p_project_id uuid, p_device_id uuid, p_ip inet, p_allocated_by uuid, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.assign_nebula_lighthouse_ip(p_project_id uuid, p_device_id uuid, p_ip inet, p_allocated_by uuid, p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION audit_log_chain_key(p_project_id uuid); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.audit_log_chain_key(p_project_id uuid) FROM PUBLIC;

--
-- Name: FUNCTION audit_log_refuse_change(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.audit_log_refuse_change() FROM PUBLIC;

--
-- Name: FUNCTION audit_log_row_hash(p_prev_hash bytea, p_row public.audit_log); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.audit_log_row_hash(p_prev_hash bytea, p_row public.audit_log) FROM PUBLIC;

--
-- Name: TABLE rate_limit_policies; Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON TABLE public.rate_limit_policies TO service_role;
GRANT SELECT ON TABLE public.rate_limit_policies TO authenticated;

--
-- Name: FUNCTION find_rate_limit_policy(p_project_id uuid, p_scope text, p_endpoint text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.find_rate_limit_policy(p_project_id uuid, p_scope text, p_endpoint text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.find_rate_limit_policy(p_project_id uuid, p_scope text, p_endpoint text) TO service_role;

--
-- Name: FUNCTION get_nebula_blocklist(p_project_id uuid, p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.get_nebula_blocklist(p_project_id uuid, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.get_nebula_blocklist(p_project_id uuid, p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION get_nebula_device_allocation(p_project_id uuid, p_device_id uuid); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.get_nebula_device_allocation(p_project_id uuid, p_device_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.get_nebula_device_allocation(p_project_id uuid, p_device_id uuid) TO service_role;

--
-- Name: FUNCTION get_nebula_ip_pool_usage(p_project_id uuid, p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.get_nebula_ip_pool_usage(p_project_id uuid, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.get_nebula_ip_pool_usage(p_project_id uuid, p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION is_nebula_public_key_revoked(p_project_id uuid, p_public_key bytea); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.is_nebula_public_key_revoked(p_project_id uuid, p_public_key bytea) FROM PUBLIC;
GRANT ALL ON FUNCTION public.is_nebula_public_key_revoked(p_project_id uuid, p_public_key bytea) TO service_role;

--
-- Name: FUNCTION list_nebula_ip_allocations(p_project_id uuid); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.list_nebula_ip_allocations(p_project_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.list_nebula_ip_allocations(p_project_id uuid) TO service_role;

--
-- Name: FUNCTION lock_free_nebula_lighthouse(p_project_id uuid, p_device_id uuid); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.lock_free_nebula_lighthouse(p_project_id uuid, p_device_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.lock_free_nebula_lighthouse(p_project_id uuid, p_device_id uuid) TO service_role;

--
-- Name: FUNCTION lock_nebula_key_devices(p_project_id uuid, p_public_keys bytea[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.lock_nebula_key_devices(p_project_id uuid, p_public_keys bytea[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.lock_nebula_key_devices(p_project_id uuid, p_public_keys bytea[]) TO service_role;

--
-- Name: FUNCTION lock_nebula_public_key(p_project_id uuid, p_public_key bytea); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.lock_nebula_public_key(p_project_id uuid, p_public_key bytea) FROM PUBLIC;
GRANT ALL ON FUNCTION public.lock_nebula_public_key(p_project_id uuid, p_public_key bytea) TO service_role;

--
-- Name: FUNCTION nebula_ip_allocations_guard(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.nebula_ip_allocations_guard() FROM PUBLIC;

--
-- Name: FUNCTION nebula_lifecycle_revocation_reasons(); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.nebula_lifecycle_revocation_reasons() FROM PUBLIC;
GRANT ALL ON FUNCTION public.nebula_lifecycle_revocation_reasons() TO service_role;

--
-- Name: FUNCTION populate_nebula_ip_pool(p_project_id uuid, p_cidr cidr, p_reserved inet[]); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.populate_nebula_ip_pool(p_project_id uuid, p_cidr cidr, p_reserved inet[]) FROM PUBLIC;
GRANT ALL ON FUNCTION public.populate_nebula_ip_pool(p_project_id uuid, p_cidr cidr, p_reserved inet[]) TO service_role;

--
-- Name: FUNCTION prune_rate_limit_buckets(p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.prune_rate_limit_buckets(p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.prune_rate_limit_buckets(p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION reclaim_idle_devices(p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.reclaim_idle_devices(p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.reclaim_idle_devices(p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION record_device_heartbeat(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.record_device_heartbeat(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.record_device_heartbeat(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION record_nebula_certificate(p_fingerprint text, p_project_id uuid, p_device_id uuid, p_ca_fingerprint text, p_ip inet, p_name text, p_groups text[], p_public_key bytea, p_not_before timestamp with time zone, p_not_after timestamp with time zone, p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.record_nebula_certificate(p_fingerprint text, p_project_id uuid, p_device_id uuid, p_ca_fingerprint text, p_ip inet, p_name text, p_groups text[], p_public_key bytea, p_not_before timestamp with time zone, p_not_after timestamp with time zone, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.record_nebula_certificate(p_fingerprint text, p_project_id uuid, p_device_id uuid, p_ca_fingerprint text, p_ip inet, p_name text, p_groups text[], p_public_key bytea, p_not_before timestamp with time zone, p_not_after timestamp with time zone, p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION register_nebula_device(p_project_id uuid, p_device_id uuid, p_user_id uuid, p_name text, p_public_key bytea, p_lighthouse boolean, p_lighthouse_ip inet, p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.register_nebula_device(p_project_id uuid, p_device_id uuid, p_user_id uuid, p_name text, p_public_key bytea, p_lighthouse boolean, p_lighthouse_ip inet, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.register_nebula_device(p_project_id uuid, p_device_id uuid, p_user_id uuid, p_name text, p_public_key bytea, p_lighthouse boolean, p_lighthouse_ip inet, p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION release_nebula_ip_by_device(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone, p_reason text); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.release_nebula_ip_by_device(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone, p_reason text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.release_nebula_ip_by_device(p_project_id uuid, p_device_id uuid, p_now timestamp with time zone, p_reason text) TO service_role;

--
-- Name: FUNCTION revoke_nebula_certificate(p_project_id uuid, p_fingerprint text, p_reason text, p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.revoke_nebula_certificate(p_project_id uuid, p_fingerprint text, p_reason text, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.revoke_nebula_certificate(p_project_id uuid, p_fingerprint text, p_reason text, p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION revoke_nebula_device_certificates(p_project_id uuid, p_device_id uuid, p_reason text, p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.revoke_nebula_device_certificates(p_project_id uuid, p_device_id uuid, p_reason text, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.revoke_nebula_device_certificates(p_project_id uuid, p_device_id uuid, p_reason text, p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION take_rate_limit_token(p_scope text, p_key text, p_endpoint text, p_project_id uuid, p_cost integer, p_now timestamp with time zone); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.take_rate_limit_token(p_scope text, p_key text, p_endpoint text, p_project_id uuid, p_cost integer, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.take_rate_limit_token(p_scope text, p_key text, p_endpoint text, p_project_id uuid, p_cost integer, p_now timestamp with time zone) TO service_role;

--
-- Name: FUNCTION verify_audit_chain(p_project_id uuid); Type: ACL; Schema: public; Owner: -
--

REVOKE ALL ON FUNCTION public.verify_audit_chain(p_project_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.verify_audit_chain(p_project_id uuid) TO authenticated;
GRANT ALL ON FUNCTION public.verify_audit_chain(p_project_id uuid) TO service_role;

--
-- Name: TABLE nebula_cas; Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON TABLE public.nebula_cas TO service_role;

--
-- Name: COLUMN nebula_cas.id; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(id) ON TABLE public.nebula_cas TO authenticated;

--
-- Name: COLUMN nebula_cas.project_id; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(project_id) ON TABLE public.nebula_cas TO authenticated;

--
-- Name: COLUMN nebula_cas.cert_pem; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(cert_pem) ON TABLE public.nebula_cas TO authenticated;

--
-- Name: COLUMN nebula_cas.fingerprint; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(fingerprint) ON TABLE public.nebula_cas TO authenticated;

--
-- Name: COLUMN nebula_cas.not_before; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(not_before) ON TABLE public.nebula_cas TO authenticated;

--
-- Name: COLUMN nebula_cas.not_after; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(not_after) ON TABLE public.nebula_cas TO authenticated;

--
-- Name: COLUMN nebula_cas.created_at; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(created_at) ON TABLE public.nebula_cas TO authenticated;

--
-- Name: COLUMN nebula_cas.retired_at; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT(retired_at) ON TABLE public.nebula_cas TO authenticated;

--
-- Name: TABLE nebula_certificates; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.nebula_certificates TO authenticated;
GRANT ALL ON TABLE public.nebula_certificates TO service_role;

--
-- Name: TABLE nebula_ip_allocations; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.nebula_ip_allocations TO authenticated;
GRANT ALL ON TABLE public.nebula_ip_allocations TO service_role;

--
-- Name: TABLE nebula_ip_pool; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.nebula_ip_pool TO authenticated;
GRANT ALL ON TABLE public.nebula_ip_pool TO service_role;

--
-- Name: TABLE nebula_lighthouses; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.nebula_lighthouses TO authenticated;
GRANT ALL ON TABLE public.nebula_lighthouses TO service_role;

--
-- Name: TABLE project_members; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.project_members TO authenticated;
GRANT ALL ON TABLE public.project_members TO service_role;

--
-- Name: TABLE projects; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.projects TO authenticated;
GRANT ALL ON TABLE public.projects TO service_role;

--
-- Name: TABLE rate_limit_buckets; Type: ACL; Schema: public; Owner: -
--

GRANT ALL ON TABLE public.rate_limit_buckets TO service_role;

--
-- Name: TABLE user_devices; Type: ACL; Schema: public; Owner: -
--

GRANT SELECT ON TABLE public.user_devices TO authenticated;
GRANT ALL ON TABLE public.user_devices TO service_role;

--
-- PostgreSQL database dump complete
--

