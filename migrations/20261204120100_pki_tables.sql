-- CA material per project and the certificates signed with it.

create table public.nebula_cas (
  id uuid primary key default gen_random_uuid(),
  project_id uuid not null references public.projects (id) on delete cascade,
  cert_pem text not null,
  fingerprint text not null,
  not_before timestamptz not null,
  not_after timestamptz not null,
  encrypted_private_key bytea not null,
  key_nonce bytea not null,
  created_at timestamptz not null default now(),
  retired_at timestamptz,
  constraint nebula_cas_fingerprint_unique unique (fingerprint),
  constraint nebula_cas_fingerprint_hex check (fingerprint ~ '^[0-9a-f]{64}$'),
  constraint nebula_cas_validity_order check (not_before < not_after),
  constraint nebula_cas_key_nonce_length check (octet_length(key_nonce) = 12)
);

create index nebula_cas_project_id_idx on public.nebula_cas (project_id);

comment on table public.nebula_cas is
  'Nebula CAs of a project; several may be valid at once while one is rotated out.';
comment on column public.nebula_cas.encrypted_private_key is
  'CA private key sealed with AES-256-GCM under the key-encryption key; the project id is the additional data.';
comment on column public.nebula_cas.fingerprint is
  'Lowercase hex SHA-256 of the CA certificate, as Nebula prints it.';

create table public.nebula_certificates (
  fingerprint text primary key,
  project_id uuid not null,
  device_id uuid not null,
  ca_fingerprint text not null references public.nebula_cas (fingerprint),
  ip inet not null,
  name text not null,
  groups text[] not null default '{}',
  public_key bytea not null,
  not_before timestamptz not null,
  not_after timestamptz not null,
  revoked_at timestamptz,
  revocation_reason text,
  created_at timestamptz not null default now(),
  constraint nebula_certificates_device_fkey foreign key (project_id, device_id)
    references public.user_devices (project_id, id) on delete cascade,
  constraint nebula_certificates_fingerprint_hex
    check (fingerprint ~ '^[0-9a-f]{64}$'),
  constraint nebula_certificates_validity_order check (not_before < not_after),
  constraint nebula_certificates_revocation_reason
    check ((revoked_at is null) = (revocation_reason is null))
);

create index nebula_certificates_project_ip_idx
  on public.nebula_certificates (project_id, ip, not_after);
create index nebula_certificates_device_idx
  on public.nebula_certificates (project_id, device_id);

comment on table public.nebula_certificates is
  'Every host certificate signed for a device; revoked ones go on the project blocklist until they expire.';
comment on column public.nebula_certificates.fingerprint is
  'Lowercase hex SHA-256 of the whole certificate, the form pki.blocklist matches.';
