-- Projects, their members, lighthouses and devices.

create table public.projects (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  cidr cidr not null,
  created_by uuid not null references auth.users (id),
  host_cert_lifetime interval not null default interval '30 days',
  ca_lifetime interval not null default interval '730 days',
  created_at timestamptz not null default now(),
  constraint projects_name_length check (char_length(name) between 1 and 200),
  constraint projects_cidr_ipv4 check (family(cidr) = 4),
  constraint projects_cidr_prefix check (masklen(cidr) between 8 and 30),
  constraint projects_host_cert_lifetime_positive
    check (host_cert_lifetime > interval '0'),
  constraint projects_ca_lifetime_positive check (ca_lifetime > interval '0')
);

comment on table public.projects is
  'A video project and its Nebula overlay network (one CA, one address pool).';
comment on column public.projects.cidr is
  'Overlay network of the project, IPv4 /8 to /30; the CA is constrained to it.';
comment on column public.projects.host_cert_lifetime is
  'Lifetime of host certificates, capped by the CA''s remaining validity.';
comment on column public.projects.ca_lifetime is
  'Lifetime of the project CA; when it ends, every certificate it signed stops working.';

create table public.project_members (
  project_id uuid not null references public.projects (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role text not null,
  created_at timestamptz not null default now(),
  constraint project_members_pkey primary key (project_id, user_id),
  constraint project_members_role_valid
    check (role in ('owner', 'admin', 'member'))
);

create index project_members_user_id_idx on public.project_members (user_id);

comment on table public.project_members is
  'Who may use a project: owners and admins manage it, members enroll devices.';

create table public.nebula_lighthouses (
  project_id uuid not null references public.projects (id) on delete cascade,
  ip inet not null,
  name text not null default '',
  endpoints text[] not null,
  device_id uuid,
  created_at timestamptz not null default now(),
  constraint nebula_lighthouses_pkey primary key (project_id, ip),
  constraint nebula_lighthouses_endpoints_present
    check (cardinality(endpoints) >= 1),
  constraint nebula_lighthouses_device_unique unique (project_id, device_id)
);

comment on table public.nebula_lighthouses is
  'Lighthouses of a project: a reserved overlay address and public host:port endpoints.';
comment on column public.nebula_lighthouses.device_id is
  'Device that registered as this lighthouse, if any.';

create table public.user_devices (
  project_id uuid not null references public.projects (id) on delete cascade,
  id uuid not null,
  owner_id uuid not null references auth.users (id) on delete cascade,
  name text not null,
  public_key bytea,
  nebula_ip inet,
  is_lighthouse boolean not null default false,
  nebula_last_seen timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint user_devices_pkey primary key (project_id, id),
  constraint user_devices_nebula_ip_unique unique (project_id, nebula_ip),
  constraint user_devices_name_length check (char_length(name) between 1 and 200),
  constraint user_devices_public_key_length
    check (public_key is null or octet_length(public_key) = 32)
);

create index user_devices_owner_id_idx on public.user_devices (owner_id);

comment on table public.user_devices is
  'One row per device enrolled in a project, owned by the user who registered it.';
comment on column public.user_devices.nebula_ip is
  'Current overlay address with the pool prefix, or null when released.';
comment on column public.user_devices.public_key is
  'X25519 public key of the device''s current certificate (32 bytes).';
