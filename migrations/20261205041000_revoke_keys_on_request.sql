-- A revocation through nebula-revoke always reaches the registration checks
-- (public.is_nebula_public_key_revoked and the device rule of
-- public.register_nebula_device), which look only at certificates revoked
-- for a reason outside public.nebula_lifecycle_revocation_reasons().
--
-- 1. A certificate that the product revoked itself (`key_changed`,
--    `released`, `reclaimed`) takes the request's reason. Its revoked_at
--    stays, because the certificate stopped being valid at that time and
--    the blocklist depends only on not_after.
-- 2. Revoking a device covers its expired certificates as well. The
--    blocklist still lists only unexpired ones, since Nebula rejects an
--    expired certificate by itself.
-- 3. The private key is what is compromised, so revoking a certificate on
--    request revokes every other unrevoked certificate of its public key in
--    the project, under any device.
--
-- Both revocations lock the device rows before the certificate rows, in the
-- order public.register_nebula_device uses (it locks its device row first).
-- A registration of the device either commits before the revocation, whose
-- key sweep then covers the new certificate, or waits for it and sees the
-- revoked key.
--
-- New SQLSTATE: VS122 the device to revoke is not in the project.

-- Locks the project's devices that hold one of the keys or have a
-- certificate for one, in id order so that two revocations cannot deadlock.
-- NOTE: a registration under a new device id with a key that a released
-- device had locks no row that this function locks, so it can still commit
-- a certificate for the key while a revocation of that key runs.
create function public.lock_nebula_key_devices(
  p_project_id uuid,
  p_public_keys bytea[]
) returns void
language plpgsql
set search_path = ''
as $$
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
end
$$;

comment on function public.lock_nebula_key_devices(uuid, bytea[]) is
  'Locks, in id order, the project''s devices that hold one of the public keys or have a certificate for one.';

-- The return type gains previous_reason, so the function is created again.
drop function public.revoke_nebula_certificate(uuid, text, text, timestamptz);

create function public.revoke_nebula_certificate(
  p_project_id uuid,
  p_fingerprint text,
  p_reason text,
  p_now timestamptz default now()
) returns table (
  fingerprint text,
  device_id uuid,
  revoked_at timestamptz,
  not_after timestamptz,
  newly_revoked boolean,
  previous_reason text
)
language plpgsql
set search_path = ''
as $$
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

comment on function public.revoke_nebula_certificate(uuid, text, text, timestamptz) is
  'Revokes one certificate on request, and every other unrevoked certificate of its public key in the project; replaces a lifecycle reason. Returns the requested certificate first, then the others it changed. Raises VS121.';

create function public.revoke_nebula_device_certificates(
  p_project_id uuid,
  p_device_id uuid,
  p_reason text,
  p_now timestamptz default now()
) returns table (
  fingerprint text,
  device_id uuid,
  revoked_at timestamptz,
  not_after timestamptz,
  previous_reason text
)
language plpgsql
set search_path = ''
as $$
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

comment on function public.revoke_nebula_device_certificates(uuid, uuid, text, timestamptz) is
  'Revokes on request every certificate of a device, expired ones included, and the unrevoked certificates of its public keys on other devices; replaces lifecycle reasons. Raises VS122.';

revoke execute on function
  public.lock_nebula_key_devices(uuid, bytea[]),
  public.revoke_nebula_certificate(uuid, text, text, timestamptz),
  public.revoke_nebula_device_certificates(uuid, uuid, text, timestamptz)
from public, anon, authenticated;

grant execute on function
  public.lock_nebula_key_devices(uuid, bytea[]),
  public.revoke_nebula_certificate(uuid, text, text, timestamptz),
  public.revoke_nebula_device_certificates(uuid, uuid, text, timestamptz)
to service_role;
