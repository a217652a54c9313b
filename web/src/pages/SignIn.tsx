import { useState } from "preact/hooks";
import { signInWithProvider, usesOidc } from "../auth";
import { Heading } from "../shop";

/** Sign-in: the site's OpenID Connect provider, or (development) a pasted DEV-ONLY token. */
export function SignIn({ onToken }: { onToken: (t: string) => void }) {
  const [value, setValue] = useState("");
  if (usesOidc) {
    return (
      <section>
        <Heading>Sign in to buy tickets</Heading>
        <button type="button" class="primary" onClick={() => void signInWithProvider()}>
          Sign in
        </button>
      </section>
    );
  }
  return (
    <section>
      <Heading>Sign in (development)</Heading>
      <p>
        Paste a DEV-ONLY access token from <code>concertctl token --user &lt;you&gt;</code>, or open the sign-in link
        that <code>scripts/run-suite.sh</code> prints.
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          onToken(value);
        }}
      >
        <label for="token">Access token</label>
        <textarea id="token" rows={3} value={value} onInput={(e) => setValue(e.currentTarget.value)} required />
        <button type="submit" class="primary">
          Sign in
        </button>
      </form>
    </section>
  );
}
