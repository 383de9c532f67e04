-- One public key per active device in a project: two machines sharing a key
-- (a cloned disk) would collapse into one Nebula peer.

create unique index user_devices_public_key_active_unique
  on public.user_devices (project_id, public_key)
  where nebula_ip is not null;

comment on index public.user_devices_public_key_active_unique is
  'A public key belongs to at most one device holding an address in a project.';
