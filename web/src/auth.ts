// Where the page's access token comes from.
//
// Production: the site's OpenID Connect provider, with oidc-client-ts (authorization code +
// PKCE), when the build sets VITE_OIDC_AUTHORITY (the issuer URL) and VITE_OIDC_CLIENT_ID
// (and, if the provider needs it to put the API in `aud`, VITE_OIDC_SCOPE / VITE_OIDC_AUDIENCE).
// Development and tests: a DEV-ONLY token from `concertctl token --user <id>`, handed over in
// the link's fragment (`#access_token=…`, never sent to a server) as scripts/run-suite.sh
// prints it, or pasted into the sign-in form.
const KEY = "concert.access_token";

const oidcConfigured = Boolean(import.meta.env.VITE_OIDC_AUTHORITY && import.meta.env.VITE_OIDC_CLIENT_ID);

async function oidcManager() {
  const { UserManager, WebStorageStateStore } = await import("oidc-client-ts");
  const audience = import.meta.env.VITE_OIDC_AUDIENCE;
  return new UserManager({
    authority: import.meta.env.VITE_OIDC_AUTHORITY ?? "",
    client_id: import.meta.env.VITE_OIDC_CLIENT_ID ?? "",
    redirect_uri: `${location.origin}/`,
    response_type: "code",
    scope: import.meta.env.VITE_OIDC_SCOPE ?? "openid profile",
    extraQueryParams: audience ? { audience } : undefined,
    userStore: new WebStorageStateStore({ store: sessionStorage }),
  });
}

/** The access token to use now, if the user is signed in (finishing an OIDC redirect or taking a dev link's token). */
export async function currentAccessToken(): Promise<string | undefined> {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromLink = fragment.get("access_token");
  if (fromLink) {
    sessionStorage.setItem(KEY, fromLink);
    history.replaceState(null, "", location.pathname);
    return fromLink;
  }
  if (oidcConfigured) {
    const manager = await oidcManager();
    if (new URLSearchParams(location.search).has("code")) {
      const user = await manager.signinRedirectCallback();
      history.replaceState(null, "", location.pathname);
      return user.access_token;
    }
    const user = await manager.getUser();
    return user && !user.expired ? user.access_token : undefined;
  }
  return sessionStorage.getItem(KEY) ?? undefined;
}

/** Whether sign-in goes through the OIDC provider (else the dev token form is shown). */
export const usesOidc = oidcConfigured;

/** Starts the provider's sign-in (a redirect). */
export async function signInWithProvider(): Promise<void> {
  await (await oidcManager()).signinRedirect();
}

/** Keeps a pasted DEV-ONLY token for this tab. */
export function keepDevToken(token: string): void {
  sessionStorage.setItem(KEY, token.trim());
}

export async function signOut(): Promise<void> {
  sessionStorage.removeItem(KEY);
  if (oidcConfigured) await (await oidcManager()).removeUser();
}
