-- Rate-limit buckets found through their unique index.
--
-- take_rate_limit_token matched buckets with `project_id is not distinct
-- from p_project_id`, which no btree index can serve, so every take read the
-- whole bucket table: one row per device, IP and user that called lately.
-- The buckets are now matched with `=` or `is null`, both served by the
-- unique index. A new bucket is also written in one statement, with the
-- token already taken, instead of an insert, a locked read and an update.

create or replace function public.take_rate_limit_token(
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
