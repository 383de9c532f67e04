-- A revocation and a registration of the same public key no longer pass
-- each other.
--
-- A registration under a new device id locks no device row that a
-- revocation locks, so it could check the key, see no revocation yet, and
-- commit a certificate for the key that the revocation's sweep had already
-- missed. Both sides now take a transaction-level advisory lock per
-- (project, key): the registration and renewal check takes it before it
-- reads, and a revocation takes it after its device rows and before it
-- changes certificates. Whichever comes second waits until the first
-- commits, then reads the first one's result: the registration sees the
-- revocation, or the revocation's sweep sees the new certificate.
--
-- Lock order stays device rows, then keys. Registration and renewal lock
-- their device row before they check the key, and a revocation takes its
-- keys in byte order, so two revocations cannot deadlock on keys.

create function public.lock_nebula_public_key(
  p_project_id uuid,
  p_public_key bytea
) returns void
language sql
volatile
set search_path = ''
as $$
  -- A hash collision between two keys only makes one wait for the other.
  select pg_advisory_xact_lock(
    hashtextextended(p_project_id::text || ':' || encode(p_public_key, 'hex'), 0)
  )
$$;

comment on function public.lock_nebula_public_key(uuid, bytea) is
  'Takes the advisory lock of a public key in a project until the transaction ends; registration, renewal and revocation take it before they read or revoke the key.';

-- Volatile, so the read below runs with a snapshot taken after the lock.
create or replace function public.is_nebula_public_key_revoked(
  p_project_id uuid,
  p_public_key bytea
) returns boolean
language plpgsql
volatile
set search_path = ''
as $$
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

comment on function public.is_nebula_public_key_revoked(uuid, bytea) is
  'Takes the key''s advisory lock until the transaction ends, then returns true when a certificate for this public key was revoked through nebula-revoke in the project, expired or not.';

create or replace function public.lock_nebula_key_devices(
  p_project_id uuid,
  p_public_keys bytea[]
) returns void
language plpgsql
set search_path = ''
as $$
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

comment on function public.lock_nebula_key_devices(uuid, bytea[]) is
  'Locks, in id order, the project''s devices that hold one of the public keys or have a certificate for one, then the keys themselves in byte order.';

revoke execute on function public.lock_nebula_public_key(uuid, bytea)
from public, anon, authenticated;

grant execute on function public.lock_nebula_public_key(uuid, bytea)
to service_role;
