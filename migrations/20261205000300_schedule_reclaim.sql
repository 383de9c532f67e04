-- Runs reclaim_idle_devices and prune_rate_limit_buckets every 10 minutes
-- with pg_cron, on databases that ship pg_cron (Supabase does). Elsewhere this
-- migration does nothing, and reclaim runs through the function that is
-- callable with the reclaim secret.

do $$
begin
  if not exists (
    select 1 from pg_catalog.pg_available_extensions where name = 'pg_cron'
  ) then
    raise notice 'pg_cron is not available: reclaim_idle_devices is not scheduled';
    return;
  end if;

  -- pg_cron is listed as available whenever its files are installed, but
  -- creating it fails unless the server preloads it; skip in that case too.
  -- The schema is the one Supabase's pg_cron guide uses
  -- (supabase.com/docs/guides/cron/install).
  begin
    create extension if not exists pg_cron with schema pg_catalog;
  exception when others then
    raise notice 'pg_cron could not be created (%): reclaim_idle_devices is not scheduled',
      sqlerrm;
    return;
  end;

  -- cron.schedule with a job name replaces an existing job of that name
  -- (pg_cron 1.3 and later), so applying this again does no harm.
  perform cron.schedule(
    'reclaim-idle-devices',
    '*/10 * * * *',
    'select public.reclaim_idle_devices()'
  );
  perform cron.schedule(
    'prune-rate-limit-buckets',
    '*/10 * * * *',
    'select public.prune_rate_limit_buckets()'
  );
end
$$;
