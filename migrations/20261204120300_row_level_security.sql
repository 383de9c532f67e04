-- Row level security: members read their own project's rows; only the
-- service role and the database owner (which the Edge Functions use) write.

-- security definer: project_members has RLS itself, so a policy that queried
-- it directly would recurse; this function reads it as the owner instead.
create function public.is_project_member(p_project_id uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1
    from public.project_members m
    where m.project_id = p_project_id and m.user_id = auth.uid()
  )
$$;

comment on function public.is_project_member(uuid) is
  'True when the user of the current access token is a member of the project.';

-- security definer for the same reason as is_project_member.
create function public.is_project_admin(p_project_id uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1
    from public.project_members m
    where m.project_id = p_project_id
      and m.user_id = auth.uid()
      and m.role in ('owner', 'admin')
  )
$$;

comment on function public.is_project_admin(uuid) is
  'True when the user of the current access token is an owner or admin of the project.';

alter table public.projects enable row level security;
alter table public.project_members enable row level security;
alter table public.nebula_lighthouses enable row level security;
alter table public.user_devices enable row level security;
alter table public.nebula_ip_pool enable row level security;
alter table public.nebula_ip_allocations enable row level security;
alter table public.nebula_cas enable row level security;
alter table public.nebula_certificates enable row level security;

-- Supabase grants every privilege on new public tables to anon and
-- authenticated by default; take them back and grant reads only.
revoke all on
  public.projects, public.project_members, public.nebula_lighthouses,
  public.user_devices, public.nebula_ip_pool, public.nebula_ip_allocations,
  public.nebula_cas, public.nebula_certificates
from anon, authenticated;

grant select on
  public.projects, public.project_members, public.nebula_lighthouses,
  public.user_devices, public.nebula_ip_pool, public.nebula_ip_allocations,
  public.nebula_certificates
to authenticated;

-- The sealed CA key and its nonce are never readable through the API.
grant select (id, project_id, cert_pem, fingerprint, not_before, not_after,
  created_at, retired_at)
on public.nebula_cas to authenticated;

grant all on
  public.projects, public.project_members, public.nebula_lighthouses,
  public.user_devices, public.nebula_ip_pool, public.nebula_ip_allocations,
  public.nebula_cas, public.nebula_certificates
to service_role;

create policy projects_member_read on public.projects
  for select to authenticated using (public.is_project_member(id));
create policy project_members_member_read on public.project_members
  for select to authenticated using (public.is_project_member(project_id));
create policy nebula_lighthouses_member_read on public.nebula_lighthouses
  for select to authenticated using (public.is_project_member(project_id));
create policy user_devices_member_read on public.user_devices
  for select to authenticated using (public.is_project_member(project_id));
create policy nebula_ip_pool_member_read on public.nebula_ip_pool
  for select to authenticated using (public.is_project_member(project_id));
create policy nebula_ip_allocations_member_read on public.nebula_ip_allocations
  for select to authenticated using (public.is_project_member(project_id));
create policy nebula_cas_member_read on public.nebula_cas
  for select to authenticated using (public.is_project_member(project_id));
create policy nebula_certificates_member_read on public.nebula_certificates
  for select to authenticated using (public.is_project_member(project_id));

-- Functions are executable by PUBLIC by default; the allocator is for the
-- service role and the owner only.
revoke execute on function
  public.populate_nebula_ip_pool(uuid, cidr, inet[]),
  public.allocate_nebula_ip(uuid, uuid, uuid, timestamptz),
  public.assign_nebula_lighthouse_ip(uuid, uuid, inet, uuid, timestamptz),
  public.release_nebula_ip_by_device(uuid, uuid, timestamptz, text),
  public.get_nebula_ip_pool_usage(uuid, timestamptz),
  public.get_nebula_device_allocation(uuid, uuid),
  public.list_nebula_ip_allocations(uuid)
from public, anon, authenticated;

grant execute on function
  public.populate_nebula_ip_pool(uuid, cidr, inet[]),
  public.allocate_nebula_ip(uuid, uuid, uuid, timestamptz),
  public.assign_nebula_lighthouse_ip(uuid, uuid, inet, uuid, timestamptz),
  public.release_nebula_ip_by_device(uuid, uuid, timestamptz, text),
  public.get_nebula_ip_pool_usage(uuid, timestamptz),
  public.get_nebula_device_allocation(uuid, uuid),
  public.list_nebula_ip_allocations(uuid)
to service_role;

revoke execute on function public.nebula_ip_allocations_guard() from public;
