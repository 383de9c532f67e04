-- Revoked certificates found without reading every certificate of a project.
--
-- get_nebula_blocklist runs for every registration and every nebula-config
-- poll, and read all certificates of the project to keep the revoked ones,
-- so its cost grew with every registration and renewal. Revoked rows are a
-- small share, and this partial index contains only them.

create index nebula_certificates_revoked_idx
  on public.nebula_certificates (project_id, not_after)
  where revoked_at is not null;

comment on index public.nebula_certificates_revoked_idx is
  'Revoked certificates by project and expiry: the rows of pki.blocklist.';
