-- Token-bucket rate limits kept in Postgres, so every function instance
-- draws from the same buckets.
--
-- Custom SQLSTATEs raised here (mapped to typed errors in shared/db/errors.ts):
--   VS111 invalid rate limit request (unknown scope, empty key, bad cost),
--   VS112 no rate limit policy applies.

create table public.rate_limit_policies (
  id bigint generated always as identity primary key,
  project_id uuid references public.projects (id) on delete cascade,
  scope text not null,
  endpoint text not null,
  capacity integer not null,
  refill_per_second numeric not null,
  created_at timestamptz not null default now(),
  constraint rate_limit_policies_target_unique
    unique nulls not distinct (project_id, scope, endpoint),
  constraint rate_limit_policies_scope_valid
    check (scope in ('user', 'device', 'ip')),
  constraint rate_limit_policies_endpoint_length
    check (char_length(endpoint) between 1 and 100),
  constraint rate_limit_policies_capacity_positive check (capacity > 0),
  constraint rate_limit_policies_refill_positive check (refill_per_second > 0)
);

comment on table public.rate_limit_policies is
  'Bucket sizes: per project or default (project_id null), per scope, per endpoint or every endpoint (''*'').';
comment on column public.rate_limit_policies.capacity is
  'Maximum tokens in a bucket: the burst a caller may send at once.';
comment on column public.rate_limit_policies.refill_per_second is
  'Tokens added per second, up to capacity: the sustained request rate.';

-- NOTE: these defaults are estimates for desktop clients that register,
-- renew and poll their config a few times an hour; projects override them.
insert into public.rate_limit_policies (project_id, scope, endpoint, capacity, refill_per_second)
values
  (null, 'user', '*', 30, 0.5),
  (null, 'device', '*', 20, 0.2),
  (null, 'ip', '*', 60, 1);

create table public.rate_limit_buckets (
  project_id uuid,
  scope text not null,
  endpoint text not null,
  bucket_key text not null,
  tokens numeric not null,
  updated_at timestamptz not null,
  full_at timestamptz not null,
  constraint rate_limit_buckets_key_unique
    unique nulls not distinct (project_id, scope, endpoint, bucket_key),
  constraint rate_limit_buckets_tokens_nonnegative check (tokens >= 0)
);

create index rate_limit_buckets_full_at_idx on public.rate_limit_buckets (full_at);

comment on table public.rate_limit_buckets is
  'Token count per (project, scope, endpoint, key) as of updated_at; a missing row is a full bucket.';
comment on column public.rate_limit_buckets.full_at is
  'When the bucket is full again without takers; from then on the row can be deleted.';

create function public.find_rate_limit_policy(
  p_project_id uuid,
  p_scope text,
  p_endpoint text
) returns public.rate_limit_policies
language sql
stable
set search_path = ''
as $$
  -- The most specific row wins: project before default, endpoint before '*'.
  select r.*
  from public.rate_limit_policies r
  where r.scope = p_scope
    and (r.project_id = p_project_id or r.project_id is null)
    and r.endpoint in (p_endpoint, '*')
  order by r.project_id is null, r.endpoint = '*'
  limit 1
$$;

comment on function public.find_rate_limit_policy(uuid, text, text) is
  'Returns the policy for a scope and endpoint: the project''s own, else the default; an exact endpoint beats ''*''.';

create function public.take_rate_limit_token(
  p_scope text,
  p_key text,
  p_endpoint text,
  p_project_id uuid default null,
  p_cost integer default 1,
  p_now timestamptz default now()
) returns table (
  allowed boolean,
  remaining integer,
  retry_after_seconds integer,
  capacity integer
)
language plpgsql
set search_path = ''
as $$
declare
  v_policy public.rate_limit_policies;
  v_bucket public.rate_limit_buckets;
  v_elapsed numeric;
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

  v_policy := public.find_rate_limit_policy(p_project_id, p_scope, p_endpoint);
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

  insert into public.rate_limit_buckets as b
    (project_id, scope, endpoint, bucket_key, tokens, updated_at, full_at)
  values (p_project_id, p_scope, p_endpoint, p_key, v_policy.capacity, p_now, p_now)
  on conflict (project_id, scope, endpoint, bucket_key) do nothing;

  -- The row lock makes refill-and-take atomic across every connection: a
  -- second taker waits here and then sees the first one's update.
  select b.* into v_bucket
  from public.rate_limit_buckets b
  where b.project_id is not distinct from p_project_id
    and b.scope = p_scope
    and b.endpoint = p_endpoint
    and b.bucket_key = p_key
  for update;

  -- A clock that goes backwards (another instance, a test) adds nothing.
  v_elapsed := greatest(extract(epoch from p_now - v_bucket.updated_at), 0);
  v_tokens := least(
    v_policy.capacity::numeric,
    v_bucket.tokens + v_elapsed * v_policy.refill_per_second
  );
  v_allowed := v_tokens >= p_cost;

  if v_allowed then
    v_tokens := v_tokens - p_cost;
  else
    v_retry := ceil((p_cost - v_tokens) / v_policy.refill_per_second)::integer;
  end if;

  update public.rate_limit_buckets b
  set tokens = v_tokens,
    updated_at = greatest(v_bucket.updated_at, p_now),
    full_at = greatest(v_bucket.updated_at, p_now)
      + make_interval(secs => ((v_policy.capacity - v_tokens) / v_policy.refill_per_second)::double precision)
  where b.project_id is not distinct from p_project_id
    and b.scope = p_scope
    and b.endpoint = p_endpoint
    and b.bucket_key = p_key;

  return query select v_allowed, floor(v_tokens)::integer, v_retry, v_policy.capacity;
end
$$;

comment on function public.take_rate_limit_token(text, text, text, uuid, integer, timestamptz) is
  'Refills the bucket for the time since its last use and takes p_cost tokens if it holds them; returns whether it did and, if not, the seconds until it would.';

create function public.prune_rate_limit_buckets(p_now timestamptz default now())
returns integer
language plpgsql
set search_path = ''
as $$
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

comment on function public.prune_rate_limit_buckets(timestamptz) is
  'Deletes buckets that have refilled completely by p_now; returns how many.';

alter table public.rate_limit_policies enable row level security;
alter table public.rate_limit_buckets enable row level security;

revoke all on public.rate_limit_policies, public.rate_limit_buckets
from public, anon, authenticated;

grant all on public.rate_limit_policies, public.rate_limit_buckets to service_role;

create policy rate_limit_policies_admin_read on public.rate_limit_policies
  for select to authenticated using (public.is_project_admin(project_id));

grant select on public.rate_limit_policies to authenticated;

revoke execute on function
  public.find_rate_limit_policy(uuid, text, text),
  public.take_rate_limit_token(text, text, text, uuid, integer, timestamptz),
  public.prune_rate_limit_buckets(timestamptz)
from public, anon, authenticated;

grant execute on function
  public.find_rate_limit_policy(uuid, text, text),
  public.take_rate_limit_token(text, text, text, uuid, integer, timestamptz),
  public.prune_rate_limit_buckets(timestamptz)
to service_role;
