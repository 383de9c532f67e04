-- Concurrent lighthouse registrations without `lighthouseIp` take
-- different free lighthouses.
--
-- register_nebula_device read the first free lighthouse without locking it,
-- so concurrent registrations all picked the same row: one took it, and the
-- others waited for it in assign_nebula_lighthouse_ip and then raised VS006
-- while other lighthouses were still free. lock_free_nebula_lighthouse
-- locks the row it returns and passes rows that other registrations are
-- taking; its SKIP LOCKED scan runs in a block with an exception handler
-- (a subtransaction), so that the row locks it took on rows it passed are
-- released before it waits for the holders. VS011 is raised and caught
-- inside lock_free_nebula_lighthouse only. A lighthouse named in the
-- request still waits for a registration that is taking it and is then
-- reported taken.

create function public.lock_free_nebula_lighthouse(
  p_project_id uuid,
  p_device_id uuid
) returns inet
language plpgsql
set search_path = ''
as $$
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

comment on function public.lock_free_nebula_lighthouse(uuid, uuid) is
  'Locks and returns the device''s own lighthouse address or the lowest free one, passing rows that concurrent registrations hold while another is free; null when none is free.';

revoke execute on function public.lock_free_nebula_lighthouse(uuid, uuid)
from public, anon, authenticated;

grant execute on function public.lock_free_nebula_lighthouse(uuid, uuid)
to service_role;

create or replace function public.register_nebula_device(
  p_project_id uuid,
  p_device_id uuid,
  p_user_id uuid,
  p_name text,
  p_public_key bytea,
  p_lighthouse boolean,
  p_lighthouse_ip inet,
  p_now timestamptz
) returns jsonb
language plpgsql
set search_path = ''
as $$
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

comment on function public.register_nebula_device(uuid, uuid, uuid, text, bytea, boolean, inet, timestamptz) is
  'First half of a registration: role check, device claim, key checks, address; returns the project''s CAs, the sealed signing key, lighthouses and blocklist. Raises VS201-VS206, VS208, VS001, VS003.';
