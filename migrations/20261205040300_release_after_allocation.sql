-- A release never closes an allocation before it began.
--
-- Handlers read their clock before they lock the device row, so a release
-- that waited for a registration of the same device could carry an
-- earlier time than the allocation it closes. The update of
-- nebula_ip_allocations then broke nebula_ip_allocations_release_order and
-- the request failed with 500. released_at is now at least allocated_at.

create or replace function public.release_nebula_ip_by_device(
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

comment on function public.release_nebula_ip_by_device(uuid, uuid, timestamptz, text) is
  'Frees a device''s address, revokes its unexpired certificates and quarantines the address until they expire.';
