import { Heading } from "../shop";

export function NotFound() {
  return (
    <section>
      <Heading>This page does not exist</Heading>
      <p>
        <a href="/">See the concerts</a>
      </p>
    </section>
  );
}
