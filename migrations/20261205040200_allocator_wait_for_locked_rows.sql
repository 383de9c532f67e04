-- Pool exhaustion only when no free address remains.
--
-- allocate_nebula_ip takes the lowest free row with SKIP LOCKED, so rows
-- that other allocations had locked counted as taken, even when those
-- allocations rolled back later (for example on a duplicate public key).
-- A registration then got VS001 while addresses were free. When the SKIP
-- LOCKED scan finds nothing, the function now scans again and waits for
-- the rows' holders. The SKIP LOCKED scan stays the fast path; it runs in
-- a block with an exception handler (a subtransaction), so that the row
-- locks it took on rows it passed are released before the waiting scan.
-- VS011 is raised and caught inside allocate_nebula_ip only.

create or replace function public.allocate_nebula_ip(
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

comment on function public.allocate_nebula_ip(uuid, uuid, uuid, timestamptz) is
  'Returns the device''s address, allocating the lowest free one if it has none; raises VS001 only when no free row remains, after waiting for allocations that hold the last ones.';
