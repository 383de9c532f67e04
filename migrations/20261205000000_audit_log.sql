-- Append-only audit log, hash-chained per project.
--
-- Custom SQLSTATEs raised here (mapped to typed errors in shared/db/errors.ts):
--   VS101 audit log rows cannot be changed or deleted,
--   VS102 invalid audit event (unknown outcome, refused without error code).

create table public.audit_log (
  id bigint generated always as identity primary key,
  -- No foreign key: refused attempts name projects that may not exist, and a
  -- project's history outlives the project.
  project_id uuid,
  seq bigint not null,
  occurred_at timestamptz not null,
  actor_id uuid,
  actor_type text not null,
  action text not null,
  target_type text,
  target_id text,
  client_ip inet,
  user_agent text,
  request_id text,
  before jsonb,
  after jsonb,
  outcome text not null,
  error_code text,
  prev_hash bytea not null,
  hash bytea not null,
  constraint audit_log_chain_seq_unique unique nulls not distinct (project_id, seq),
  constraint audit_log_actor_type_valid
    check (actor_type in ('user', 'service', 'system', 'anonymous')),
  constraint audit_log_outcome_valid check (outcome in ('allowed', 'refused')),
  constraint audit_log_refusal_has_code
    check ((outcome = 'refused') = (error_code is not null)),
  constraint audit_log_action_length check (char_length(action) between 1 and 100),
  constraint audit_log_user_agent_length check (char_length(user_agent) <= 1000),
  constraint audit_log_request_id_length check (char_length(request_id) <= 200),
  constraint audit_log_hash_length
    check (octet_length(prev_hash) = 32 and octet_length(hash) = 32)
);

create index audit_log_project_occurred_idx
  on public.audit_log (project_id, occurred_at);

comment on table public.audit_log is
  'Append-only record of every change and refused attempt; each project''s rows form a SHA-256 hash chain.';
comment on column public.audit_log.project_id is
  'Project the event belongs to; null for events outside any project (they form their own chain).';
comment on column public.audit_log.seq is
  'Position in the project''s chain, starting at 1 with no gaps; a gap means a deleted row.';
comment on column public.audit_log.actor_type is
  'user (access token), service (service role key or cron secret), system (database job) or anonymous.';
comment on column public.audit_log.action is
  'Dotted verb such as device.register, device.renew, device.release, certificate.revoke, device.reclaim.';
comment on column public.audit_log.outcome is
  'allowed when the change happened, refused when it was rejected (error_code says why).';
comment on column public.audit_log.prev_hash is
  'hash of the previous row of the same chain; 32 zero bytes for the first row.';
comment on column public.audit_log.hash is
  'sha256(prev_hash || canonical row content), see public.audit_log_row_hash.';

-- The latest row of each chain. Writers lock the head row, so inserts into one
-- chain are serialized even under REPEATABLE READ, where a reader of
-- audit_log alone could miss a concurrent row and fork the chain.
create table public.audit_log_heads (
  chain_key uuid primary key,
  seq bigint not null,
  hash bytea not null,
  constraint audit_log_heads_hash_length check (octet_length(hash) = 32)
);

comment on table public.audit_log_heads is
  'Sequence number and hash of the latest audit_log row per project chain (nil uuid for events without project).';

create function public.audit_log_chain_key(p_project_id uuid) returns uuid
language sql
immutable
set search_path = ''
as $$
  select coalesce(p_project_id, '00000000-0000-0000-0000-000000000000'::uuid)
$$;

comment on function public.audit_log_chain_key(uuid) is
  'Key of a project''s chain in audit_log_heads; events without project share the nil uuid.';

-- Canonical content: a JSON array in fixed column order. jsonb prints keys in a
-- fixed order and the timestamp as epoch microseconds, so the text does not
-- depend on the session's TimeZone or DateStyle.
create function public.audit_log_row_hash(
  p_prev_hash bytea,
  p_row public.audit_log
) returns bytea
language sql
immutable
set search_path = ''
as $$
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

comment on function public.audit_log_row_hash(bytea, public.audit_log) is
  'sha256(prev_hash || canonical JSON of the row''s content columns); id, prev_hash and hash are not part of it.';

create function public.audit_log_refuse_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'audit_log is append-only: % refused', tg_op
    using errcode = 'VS101',
      detail = 'Rows of public.audit_log are never updated, deleted or truncated, by any role.',
      hint = 'Append a new event with public.append_audit_event instead.';
end
$$;

comment on function public.audit_log_refuse_change() is
  'Trigger function that rejects every update, delete and truncate of audit_log.';

create trigger audit_log_no_update_delete
  before update or delete on public.audit_log
  for each row execute function public.audit_log_refuse_change();

create trigger audit_log_no_truncate
  before truncate on public.audit_log
  for each statement execute function public.audit_log_refuse_change();

-- security definer: API roles have no insert privilege on audit_log or its
-- heads, so the chain can only grow through this function; execute is granted
-- to service_role only.
create function public.append_audit_event(
  p_project_id uuid,
  p_actor_id uuid,
  p_actor_type text,
  p_action text,
  p_target_type text default null,
  p_target_id text default null,
  p_outcome text default 'allowed',
  p_error_code text default null,
  p_before jsonb default null,
  p_after jsonb default null,
  p_client_ip inet default null,
  p_user_agent text default null,
  p_request_id text default null,
  p_now timestamptz default now()
) returns public.audit_log
language plpgsql
security definer
set search_path = ''
as $$
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

comment on function public.append_audit_event(uuid, uuid, text, text, text, text, text, text, jsonb, jsonb, inet, text, text, timestamptz) is
  'Appends one event to its project''s hash chain and returns the stored row.';

-- security definer: admins read the chain through this function (the RLS
-- policy below already limits them to their projects, and the function adds
-- the same check so it also works for callers that bypass RLS).
create function public.verify_audit_chain(p_project_id uuid)
returns table (
  ok boolean,
  checked bigint,
  broken_id bigint,
  broken_seq bigint,
  reason text
)
language plpgsql
stable
security definer
set search_path = ''
as $$
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

comment on function public.verify_audit_chain(uuid) is
  'Recomputes a project''s audit chain; returns ok, or the first row whose sequence, prev_hash or hash is wrong.';

alter table public.audit_log enable row level security;
alter table public.audit_log_heads enable row level security;

revoke all on public.audit_log, public.audit_log_heads
from public, anon, authenticated, service_role;

grant select on public.audit_log to authenticated, service_role;

create policy audit_log_admin_read on public.audit_log
  for select to authenticated using (public.is_project_admin(project_id));

revoke execute on function
  public.append_audit_event(uuid, uuid, text, text, text, text, text, text, jsonb, jsonb, inet, text, text, timestamptz),
  public.verify_audit_chain(uuid),
  public.audit_log_refuse_change(),
  public.audit_log_row_hash(bytea, public.audit_log),
  public.audit_log_chain_key(uuid)
from public, anon, authenticated;

grant execute on function
  public.append_audit_event(uuid, uuid, text, text, text, text, text, text, jsonb, jsonb, inet, text, text, timestamptz)
to service_role;

grant execute on function public.verify_audit_chain(uuid) to authenticated, service_role;
