/** Validity window of a host certificate, in whole seconds as Nebula stores it. */
export interface Validity {
  notBefore: Date;
  notAfter: Date;
}

/** The part of a CA that bounds the certificates it signs. */
export interface CaValidity {
  notBefore: Date;
  notAfter: Date;
}

function floorToSecond(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

/**
 * Returns the validity of a host certificate signed at `now`. It starts at
 * `now`, because Nebula reports a NotBefore in the future as expired, and
 * never before the CA. It lasts `lifetimeSeconds`, capped by the CA's
 * NotAfter, because Nebula rejects a certificate that outlives its CA.
 * Returns null when the CA is not valid at `now`.
 */
export function hostCertificateValidity(
  now: Date,
  lifetimeSeconds: number,
  ca: CaValidity,
): Validity | null {
  if (!(lifetimeSeconds > 0)) return null;

  const start = floorToSecond(now).getTime();
  const notBefore = Math.max(start, ca.notBefore.getTime());
  const notAfter = Math.min(
    notBefore + lifetimeSeconds * 1000,
    ca.notAfter.getTime(),
  );

  if (notAfter <= notBefore || notBefore > start) return null;
  return { notBefore: new Date(notBefore), notAfter: new Date(notAfter) };
}
