-- Device lifecycle: heartbeat, revocation, blocklist and reclaim of idle
-- devices.
--
-- Custom SQLSTATEs raised here (mapped to typed errors in shared/db/errors.ts):
--   VS002 device not found (as in the allocator),
--   VS121 certificate not found.

alter table public.projects
  add column if not exists device_idle_timeout interval default interval '90 days';

alter table public.projects
  add constraint projects_device_idle_timeout_positive
  check (device_idle_timeout is null or device_idle_timeout > interval '0');

comment on column public.projects.device_idle_timeout is
  'A device without heartbeat or new certificate for this long is reclaimed; null turns reclaim off. Lighthouses are never reclaimed.';

-- Reclaim looks for devices by last sign of life within a project.
create index if not exists user_devices_last_seen_idx
  on public.user_devices (project_id, nebula_last_seen);

create function public.record_device_heartbeat(
  p_project_id uuid,
  p_device_id uuid,
  p_now timestamptz default now()
) returns timestamptz
language plpgsql
set search_path = ''
as $$
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

comment on function public.record_device_heartbeat(uuid, uuid, timestamptz) is
  'Sets the device''s nebula_last_seen to p_now unless it is later already; returns the stored value.';

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
  newly_revoked boolean
)
language plpgsql
set search_path = ''
as $$
declare
  v_cert public.nebula_certificates;
begin
  select c.* into v_cert
  from public.nebula_certificates c
  where c.project_id = p_project_id and c.fingerprint = lower(p_fingerprint)
  for update;

  if not found then
    raise exception 'certificate % not found in project %', p_fingerprint, p_project_id
      using errcode = 'VS121',
        hint = 'Give the lowercase hex SHA-256 fingerprint of a certificate of this project.';
  end if;

  -- Revoking twice keeps the first time and reason.
  if v_cert.revoked_at is not null then
    return query select v_cert.fingerprint, v_cert.device_id, v_cert.revoked_at,
      v_cert.not_after, false;
    return;
  end if;

  update public.nebula_certificates c
  set revoked_at = p_now, revocation_reason = p_reason
  where c.fingerprint = v_cert.fingerprint;

  return query select v_cert.fingerprint, v_cert.device_id, p_now, v_cert.not_after, true;
end
$$;

comment on function public.revoke_nebula_certificate(uuid, text, text, timestamptz) is
  'Revokes one certificate of a project (idempotent); it stays on the blocklist until it expires.';

create function public.get_nebula_blocklist(
  p_project_id uuid,
  p_now timestamptz default now()
) returns setof text
language sql
stable
set search_path = ''
as $$
  -- An expired certificate is refused by Nebula anyway, so it leaves the list.
  select c.fingerprint
  from public.nebula_certificates c
  where c.project_id = p_project_id
    and c.revoked_at is not null
    and c.not_after > p_now
  order by c.fingerprint
$$;

comment on function public.get_nebula_blocklist(uuid, timestamptz) is
  'Lowercase hex fingerprints for pki.blocklist: revoked certificates of the project that have not expired at p_now.';

create function public.reclaim_idle_devices(p_now timestamptz default now())
returns table (
  project_id uuid,
  device_id uuid,
  ip inet,
  last_activity timestamptz,
  quarantined_until timestamptz,
  revoked_fingerprints text[]
)
language plpgsql
set search_path = ''
as $$
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

comment on function public.reclaim_idle_devices(timestamptz) is
  'Releases every non-lighthouse device idle longer than its project''s device_idle_timeout: revokes its certificates, quarantines its address until they expire, and writes a device.reclaim audit row.';

revoke execute on function
  public.record_device_heartbeat(uuid, uuid, timestamptz),
  public.revoke_nebula_certificate(uuid, text, text, timestamptz),
  public.get_nebula_blocklist(uuid, timestamptz),
  public.reclaim_idle_devices(timestamptz)
from public, anon, authenticated;

grant execute on function
  public.record_device_heartbeat(uuid, uuid, timestamptz),
  public.revoke_nebula_certificate(uuid, text, text, timestamptz),
  public.get_nebula_blocklist(uuid, timestamptz),
  public.reclaim_idle_devices(timestamptz)
to service_role;
