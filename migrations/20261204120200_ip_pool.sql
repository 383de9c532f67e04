-- Address pool, allocation history and the allocator functions.
--
-- Custom SQLSTATEs raised here (mapped to typed errors in shared/db/errors.ts):
--   VS001 pool exhausted, VS002 device not found, VS003 project not found,
--   VS004 invalid pool prefix.

create table public.nebula_ip_pool (
  project_id uuid not null references public.projects (id) on delete cascade,
  ip inet not null,
  device_id uuid,
  allocated_at timestamptz,
  quarantined_until timestamptz,
  constraint nebula_ip_pool_pkey primary key (project_id, ip),
  -- Nulls are distinct, so this binds allocated rows only: one address per device.
  constraint nebula_ip_pool_device_unique unique (project_id, device_id),
  constraint nebula_ip_pool_device_fkey foreign key (project_id, device_id)
    references public.user_devices (project_id, id),
  constraint nebula_ip_pool_allocated_consistent
    check ((device_id is null) = (allocated_at is null)),
  constraint nebula_ip_pool_free_when_quarantined
    check (quarantined_until is null or device_id is null)
);

-- The allocator scans only free rows, in address order.
create index nebula_ip_pool_free_idx on public.nebula_ip_pool (project_id, ip)
  where device_id is null;

comment on table public.nebula_ip_pool is
  'One row per usable address of a project; never the network, broadcast or a lighthouse address.';
comment on column public.nebula_ip_pool.quarantined_until is
  'A released address stays out of allocation until every certificate issued for it has expired.';

create table public.nebula_ip_allocations (
  id bigint generated always as identity primary key,
  project_id uuid not null references public.projects (id) on delete cascade,
  ip inet not null,
  device_id uuid not null,
  allocated_by uuid,
  allocated_at timestamptz not null,
  released_at timestamptz,
  constraint nebula_ip_allocations_release_order
    check (released_at is null or released_at >= allocated_at)
);

-- A device has at most one open allocation.
create unique index nebula_ip_allocations_open_device_idx
  on public.nebula_ip_allocations (project_id, device_id)
  where released_at is null;

comment on table public.nebula_ip_allocations is
  'Append-only history of allocations; release only fills released_at.';

create function public.nebula_ip_allocations_guard() returns trigger
language plpgsql
set search_path = ''
as $$
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

create trigger nebula_ip_allocations_append_only
  before update or delete on public.nebula_ip_allocations
  for each row execute function public.nebula_ip_allocations_guard();

create function public.populate_nebula_ip_pool(
  p_project_id uuid,
  p_cidr cidr,
  p_reserved inet[] default '{}'
) returns integer
language plpgsql
set search_path = ''
as $$
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
  return v_count;
end
$$;

comment on function public.populate_nebula_ip_pool(uuid, cidr, inet[]) is
  'Fills a project''s pool with every usable address of the prefix except reserved ones; returns the rows added.';

create function public.get_nebula_ip_pool_usage(
  p_project_id uuid,
  p_now timestamptz default now()
) returns table (
  total bigint,
  allocated bigint,
  quarantined bigint,
  free bigint
)
language sql
stable
set search_path = ''
as $$
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

comment on function public.get_nebula_ip_pool_usage(uuid, timestamptz) is
  'Counts a project''s pool rows: total, allocated, quarantined and free at p_now.';

create function public.allocate_nebula_ip(
  p_project_id uuid,
  p_device_id uuid,
  p_allocated_by uuid,
  p_now timestamptz default now()
) returns inet
language plpgsql
set search_path = ''
as $$
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

comment on function public.allocate_nebula_ip(uuid, uuid, uuid, timestamptz) is
  'Returns the device''s address, allocating the lowest free one if it has none; raises VS001 when the pool is exhausted.';

create function public.assign_nebula_lighthouse_ip(
  p_project_id uuid,
  p_device_id uuid,
  p_ip inet,
  p_allocated_by uuid,
  p_now timestamptz default now()
) returns inet
language plpgsql
set search_path = ''
as $$
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

comment on function public.assign_nebula_lighthouse_ip(uuid, uuid, inet, uuid, timestamptz) is
  'Gives a device the reserved address of one of the project''s lighthouses.';

create function public.release_nebula_ip_by_device(
  p_project_id uuid,
  p_device_id uuid,
  p_now timestamptz default now(),
  p_reason text default 'released'
) returns table (
  ip inet,
  quarantined_until timestamptz,
  revoked_fingerprints text[]
)
language plpgsql
set search_path = ''
as $$
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

  update public.nebula_ip_allocations a
  set released_at = p_now
  where a.project_id = p_project_id
    and a.device_id = p_device_id
    and a.released_at is null;

  return query select v_device.nebula_ip, v_until, v_revoked;
end
$$;

comment on function public.release_nebula_ip_by_device(uuid, uuid, timestamptz, text) is
  'Frees a device''s address, revokes its unexpired certificates and quarantines the address until they expire.';

create function public.get_nebula_device_allocation(
  p_project_id uuid,
  p_device_id uuid
) returns table (
  device_id uuid,
  ip inet,
  is_lighthouse boolean,
  allocated_at timestamptz
)
language sql
stable
set search_path = ''
as $$
  select d.id, d.nebula_ip, d.is_lighthouse, a.allocated_at
  from public.user_devices d
  left join public.nebula_ip_allocations a
    on a.project_id = d.project_id
    and a.device_id = d.id
    and a.released_at is null
  where d.project_id = p_project_id and d.id = p_device_id
$$;

comment on function public.get_nebula_device_allocation(uuid, uuid) is
  'Returns one device''s current address (null when released).';

create function public.list_nebula_ip_allocations(p_project_id uuid)
returns table (
  device_id uuid,
  ip inet,
  is_lighthouse boolean,
  allocated_at timestamptz
)
language sql
stable
set search_path = ''
as $$
  select d.id, d.nebula_ip, d.is_lighthouse, a.allocated_at
  from public.user_devices d
  join public.nebula_ip_allocations a
    on a.project_id = d.project_id
    and a.device_id = d.id
    and a.released_at is null
  where d.project_id = p_project_id
  order by d.nebula_ip
$$;

comment on function public.list_nebula_ip_allocations(uuid) is
  'Lists the current allocations of a project in address order.';
