/** esbuild's text loader: a YAML file imported as its text. */
declare module '*.yaml' {
  const text: string;
  export default text;
}
