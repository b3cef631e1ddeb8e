// Checks custom resources against the models that @kubernetes-models generates from the operators'
// own Go API types (github.com/kedacore/keda/v2/apis/..., github.com/prometheus-operator/...), the
// types their CRDs' schemas are generated from:
//
// 1. the model's JSON-schema validator (ajv): types, formats, required fields, enums;
// 2. TypeScript's excess-property check against the model's interface: a field the type does not
//    declare (a typo, a field of another version) is an error. The validators of step 1 allow
//    unknown fields, as a CRD without `x-kubernetes-preserve-unknown-fields` would not.
//
//   node validate-crs.mjs RESOURCES.json   (a JSON array of resources; exit 1 on any error)
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";

const HERE = dirname(fileURLToPath(import.meta.url));
const PACKAGES = { "keda.sh": "@kubernetes-models/keda", "monitoring.coreos.com": "@kubernetes-models/prometheus-operator" };

const resources = JSON.parse(readFileSync(process.argv[2], "utf8"));
const errors = [];
const declarations = [];
const imports = [];

for (const [n, resource] of resources.entries()) {
  const [group, version] = resource.apiVersion.split("/");
  const pkg = PACKAGES[group];
  const where = `${resource.kind}/${resource.metadata?.name} (${resource.apiVersion})`;
  if (!pkg) {
    errors.push(`${where}: no model for API group ${group}`);
    continue;
  }
  const module = await import(`${pkg}/${group}/${version}`);
  const Model = module[resource.kind];
  if (!Model) {
    errors.push(`${where}: ${pkg} has no kind ${resource.kind} in ${group}/${version}`);
    continue;
  }
  try {
    new Model(resource).validate();
  } catch (error) {
    errors.push(`${where}: ${error.message}`);
  }
  imports.push(`import type { I${resource.kind} as T${n} } from "${pkg}/${group}/${version}/${resource.kind}";`);
  declarations.push(`// ${where}\nexport const r${n}: T${n} = ${JSON.stringify(resource, null, 2)};`);
}

if (declarations.length) {
  // Beside node_modules, so that the packages resolve from it.
  const dir = mkdtempSync(join(HERE, ".check-"));
  const file = join(dir, "resources.ts");
  writeFileSync(file, `${imports.join("\n")}\n\n${declarations.join("\n\n")}\n`);
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  try {
    execFileSync(process.execPath, [tsc, "--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext",
      "--moduleResolution", "nodenext", "--target", "es2022", file], { cwd: HERE, encoding: "utf8", stdio: "pipe" });
  } catch (error) {
    const text = readFileSync(file, "utf8").split("\n");
    for (const line of `${error.stdout}`.split("\n").filter((l) => l.includes("error TS"))) {
      // resources.ts(LINE,COL): error TSxxxx: message -> name the resource and the field's line
      const m = line.match(/\((\d+),\d+\): (.*)$/);
      const at = m ? Number(m[1]) : 0;
      const owner = text.slice(0, at).reverse().find((l) => l.startsWith("// ")) ?? "";
      errors.push(`${owner.slice(3)}: ${m ? m[2] : line} (at: ${m ? text[at - 1].trim() : "?"})`);
    }
    if (!errors.length) errors.push(`tsc failed: ${error.stdout}${error.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const e of errors) console.log(e);
console.log(`${resources.length} custom resources checked, ${errors.length} errors`);
process.exit(errors.length ? 1 : 0);
